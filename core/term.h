/* term.h — the interactive terminal for `cogos shell`: line editing (libedit),
 * history, completion, width, and Ctrl-C handling that never kills the shell.
 *
 * Lua API (core.term):
 *   line = readline(prompt)   the edited line (without newline); nil on Ctrl-D at an
 *                             empty line (end of input); false on Ctrl-C (line cleared).
 *                             Ctrl-C reaches readline as a key (isig is off while editing).
 *   set_completer(fn | nil)   fn(word, before) -> array of candidates for `word`, the
 *                             text between the last blank and the cursor; `before` is
 *                             the whole line up to the cursor. Tab inserts the longest
 *                             common prefix (plus a blank when only one candidate fits
 *                             and it does not end in "/"); a second Tab lists them.
 *   history_add(line)         history_clear()
 *   history_load(path) -> true | nil, err     history_save(path) -> true | nil, err
 *   isatty([fd=0]) -> boolean
 *   width() -> columns of the terminal on stdout, or nil when it is not a terminal
 *   interrupts(on)            on: SIGINT only sets a flag (the shell survives Ctrl-C while
 *                             a command runs); off: the previous disposition again
 *   interrupted() -> boolean  whether Ctrl-C came since the last call (clears the flag)
 *   wait(ms [, stdin]) -> "interrupt" | "input" | "timeout"   sleeps up to ms, returning
 *                             early on Ctrl-C or, with stdin true, when a line can be read
 *   run_loop() -> true | false   runs core.loop until it stops or has nothing left to do;
 *                             false when Ctrl-C stopped it
 */
#ifndef COGOS_TERM_H
#define COGOS_TERM_H

/* term_luaopen is declared in lcore.h with the other core modules. */

#endif
