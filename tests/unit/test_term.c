/* test_term.c — core.term without a terminal: history files, waits, Ctrl-C
 * as a flag while interrupts are on, and the loop stopped by SIGINT. */
#include "lcore.h"
#include "unit.h"

#include <lauxlib.h>
#include <lualib.h>

#include <stdlib.h>

/* loop.h pulls in uv.h, whose <sched.h> would resolve to core/sched.h under -Icore. */
void loop_close(void);

static lua_State *new_state (void) {
  lua_State *L = luaL_newstate();
  luaL_openlibs(L);
  luaL_requiref(L, "term", term_luaopen, 1);
  luaL_requiref(L, "loop", loop_luaopen, 1);
  luaL_requiref(L, "sys", sys_luaopen, 1);
  lua_pop(L, 3);
  lua_register(L, "check", unit_lua_check);
  return L;
}

static void lua_run (lua_State *L, const char *code) {
  if (luaL_dostring(L, code) != LUA_OK) {
    unit_failed++;
    fprintf(stderr, "FAIL %s: Lua error: %s\n", unit_current, lua_tostring(L, -1));
    lua_pop(L, 1);
  }
}

static lua_State *L;

TEST(history_round_trip) {
  lua_run(L,
          "local a, b = os.tmpname(), os.tmpname()\n"
          "term.history_add('ls notes')\n"
          "term.history_add('=1 + 1')\n"
          "term.history_add('')\n" /* empty lines are not history */
          "check(term.history_save(a))\n"
          "term.history_clear()\n"
          "check(term.history_load(a))\n"
          "check(term.history_save(b))\n"
          "local function slurp(p) local f = io.open(p, 'rb') local s = f:read('a') f:close() return s end\n"
          "local sa, sb = slurp(a), slurp(b)\n"
          "check(sa == sb, 'the saved history loads back the same')\n"
          "check(sa:find('notes', 1, true) and sa:find('=1', 1, true), 'both entries saved (vis-encoded)')\n"
          "os.remove(a) os.remove(b)\n"
          "local ok, err = term.history_load('/nonexistent/dir/h')\n"
          "check(ok == nil and err:find('cannot load history', 1, true), 'a missing file is an error')\n");
}

TEST(facts) {
  lua_run(L, "check(type(term.isatty()) == 'boolean')\n"
             "local w = term.width()\n"
             "check(w == nil or math.type(w) == 'integer')\n"
             "check(not pcall(term.set_completer, 42), 'a completer must be a function')\n"
             "term.set_completer(function() return {} end)\n"
             "term.set_completer(nil)\n");
}

TEST(interrupts) {
  lua_run(L, "check(term.wait(10) == 'timeout')\n"
             "term.interrupts(true)\n"
             "sys.kill(sys.getpid(), 2)\n" /* SIGINT: only a flag now */
             "check(term.interrupted() == true, 'Ctrl-C is seen')\n"
             "check(term.interrupted() == false, 'and cleared')\n"
             "sys.kill(sys.getpid(), 2)\n"
             "local t0 = sys.monotonic_ms()\n"
             "check(term.wait(5000) == 'interrupt', 'a pending Ctrl-C ends a wait')\n"
             "check(sys.monotonic_ms() - t0 < 1000, 'at once')\n"
             "check(term.wait(10) == 'timeout', 'the interrupt was consumed')\n"
             "term.interrupts(false)\n");
}

TEST(run_loop) {
  lua_run(L, "local fired = false\n"
             "loop.timer(5, 0, function() fired = true end)\n"
             "check(term.run_loop() == true, 'the loop ran out of work')\n"
             "check(fired)\n"
             "term.interrupts(true)\n"
             "local t = loop.timer(5, 0, function() sys.kill(sys.getpid(), 2) end)\n"
             "local long = loop.timer(60000, 0, function() end)\n"
             "check(term.run_loop() == false, 'Ctrl-C stopped the loop')\n"
             "long:stop()\n"
             "sys.kill(sys.getpid(), 2)\n" /* still caught after the loop's own watch */
             "check(term.interrupted() == true, 'interrupts stay on after run_loop')\n"
             "term.interrupts(false)\n"
             "t:stop()\n");
}

int main (void) {
  L = new_state();
  RUN(history_round_trip);
  RUN(facts);
  RUN(interrupts);
  RUN(run_loop);
  lua_close(L);
  loop_close();
  return unit_report();
}
