-- `cogos shell` end to end: -c, a pipe, and a pseudo-terminal (tmux) for line
-- editing, completion, history across sessions, attach with Ctrl-C and Lua
-- with continuation lines.

local core = require "cogos.core"
local harness = require "harness"

local shquote = harness.shquote

local SCRIPT = [[{"turns": [
 {"content": [{"type": "text", "text": "Writing the file."},
   {"type": "tool_use", "name": "run_code",
    "input": {"code": "files.write('out/hello.txt', 'hi from exec')\nprint('wrote it')"}}]},
 {"content": [{"type": "text", "text": "All done."}]}
]}]]

-- A terminal: the shell running in a detached tmux session on a private server.
local Pty = {}
Pty.__index = Pty

local function tmux(p, args)
  local cmd = "tmux -L " .. p.sock .. " " .. args
  local h = io.popen(cmd .. " 2>&1")
  local out = h:read("a")
  h:close()
  return out
end

local function open_pty(w)
  local p = setmetatable({ sock = "cogos-e2e-" .. core.sys.getpid() .. "-" .. tostring(math.random(1e9)) }, Pty)
  local cmd = string.format("cd %s && env %s TERM=xterm %s shell; echo '[shell exited '$?']'; sleep 60",
    shquote(w.cwd), w:envstr(), harness.bin)
  tmux(p, "new-session -d -s main -x 150 -y 50 " .. shquote(cmd))
  local ok, err = pcall(p.expect, p, "demo:/%$$")
  if not ok then
    p:close()
    error(err, 2)
  end
  return p
end

function Pty:keys(...)
  local parts = {}
  for _, k in ipairs({ ... }) do parts[#parts + 1] = k end
  tmux(self, "send-keys -t main " .. table.concat(parts, " "))
end

function Pty:type(text)
  tmux(self, "send-keys -t main -l " .. shquote(text))
end

function Pty:line(text)
  self:type(text)
  self:keys("Enter")
end

function Pty:screen()
  return (tmux(self, "capture-pane -p -t main -S -200"):gsub("%s+\n", "\n"):gsub("%s+$", ""))
end

---Waits until the screen matches pattern; returns the screen.
function Pty:expect(pattern, timeout_ms)
  local last
  local ok, res = pcall(harness.wait, function()
    last = self:screen()
    return last:find(pattern) and last
  end, timeout_ms or 5000, pattern)
  if not ok then error("screen never matched " .. pattern .. ":\n" .. tostring(last), 2) end
  return res
end

function Pty:close()
  tmux(self, "kill-server")
end

describe("cogos shell", function()
  local w
  before_each(function()
    w = harness.world()
    w:boot()
  end)
  after_each(function() w:close() end)

  it("runs -c commands separated by ; and exits 1 when one failed", function()
    w:ok("cogos file create notes/a.md alpha")
    local code, out, err = w:run("cogos shell -c " .. shquote("pwd; cd notes; pwd; ls; cat a.md; cat ../notes/a.md"))
    assert.equal(0, code, err)
    assert.equal("/\n/notes\na.md\nalpha\nalpha\n", out)
    code, out, err = w:run("cogos shell -c " .. shquote("ls /nope; pwd; frob"))
    assert.equal(1, code)
    assert.equal("/\n", out)
    assert.match("ls: no such file or directory: /nope", err)
    assert.match("Unknown command: frob%. Type 'help' for available commands%.", err)
  end)

  it("reads commands from a pipe without prompts, Lua continuing over lines", function()
    local code, out, err = w:run("cogos shell", { stdin = "ch send news {\"n\": 1}\n=function f(x)\nreturn x * 2\n"
      .. "end\n=f(21)\nch log news\n" })
    assert.equal(0, code, err)
    assert.falsy(out:find("demo:/", 1, true))
    assert.match("^Sent to news %(new channel%)", out)
    assert.match("\n42\n", out)
    assert.match('%] {"n":1}\n$', out)
    code, out = w:run("cogos shell", { stdin = "pwd\nnosuch\n" })
    assert.equal(1, code)
    assert.equal("/\n", out)
  end)

  it("edits files with $EDITOR and pages with $PAGER", function()
    local editor = w.dir .. "/editor.sh"
    local f = assert(io.open(editor, "wb"))
    f:write("#!/bin/sh\nprintf 'new text\\n' > \"$1\"\n")
    f:close()
    os.execute("chmod +x " .. shquote(editor))
    local out = w:ok("cogos shell -c " .. shquote("edit docs/x.md; edit docs/x.md; less docs/x.md"),
      { env = { EDITOR = editor, PAGER = "cat" } })
    assert.equal("Created: docs/x.md\n(no changes)\nnew text\n", out)
    out = w:ok("cogos shell -c " .. shquote("vi docs/x.md"), { env = { EDITOR = "true" } })
    assert.equal("(no changes)\n", out)
  end)

  it("exec runs a file as a one_shot process with every capability, in the shell", function()
    w:ok("cogos file create mnt/boot/scripts/hello.json " .. shquote(SCRIPT))
    w:ok("cogos file create prompts/hello.md " .. shquote("Write out/hello.txt"))
    local code, out, err = w:run("cogos shell -c " .. shquote("exec prompts/hello.md; cat out/hello.txt"))
    assert.equal(0, code, err)
    assert.match("wrote it\n", out)
    assert.match("tokens: %d+ in, %d+ out %(%d+ms%)\n", out)
    assert.match("hi from exec\n$", out)
    assert.match("All done%.", out .. err) -- assistant text: the executor chooses the stream
    local p = w:ok("cogos process get hello --json")
    assert.equal("disabled", p.status)
    -- again: the disabled one_shot is reused; a live process of that name is not taken over
    w:ok("cogos shell -c " .. shquote("exec prompts/hello.md"))
    w:ok("cogos file create prompts/demo.md " .. shquote("Take over?"))
    code, out, err = w:run("cogos shell -c " .. shquote("exec prompts/demo.md"))
    assert.equal(1, code, out)
    assert.match("exec: process 'demo' exists %(daemon, %a+%); choose %-%-name", err)
    assert.equal("daemon", w:ok("cogos process get demo --json").mode)
  end)

  it("edits lines, completes, keeps history across sessions, attaches and detaches with Ctrl-C", function()
    w:ok("cogos file create notes/a.md alpha")
    local p = open_pty(w)
    local ok, err = pcall(function()
      -- completion of a command, a path and a process name
      p:type("pw")
      p:keys("Tab")
      p:expect("demo:/%$ pwd$")
      p:keys("Enter")
      p:expect("demo:/%$ pwd\n/\ndemo:/%$$")
      p:type("cat no")
      p:keys("Tab")
      p:expect("cat notes/$")
      p:type("a")
      p:keys("Tab", "Enter")
      p:expect("cat notes/a%.md\nalpha\n")
      p:type("attach de")
      p:keys("Tab")
      p:expect("attach demo$")
      -- attach: output of the process appears; Ctrl-C detaches, the shell stays
      p:keys("Enter")
      p:expect("attached to demo")
      w:ok("cogos channel send io:stdout:demo --payload " .. shquote('{"text":"hello from demo"}'))
      p:expect("stdout hello from demo", 5000)
      p:keys("C-c")
      p:expect("detached from demo\ndemo:/%$$")
      -- Ctrl-C at the prompt drops the line
      p:type("some half line")
      p:keys("C-c")
      p:expect("some half line%^C\ndemo:/%$$")
      -- Lua with continuation lines
      p:line("=function f(x)")
      p:expect(">>$")
      p:line("return x * 2")
      p:line("end")
      p:line("=f(21)")
      p:expect("\n42\ndemo:/%$$")
      -- Ctrl-C stops runaway Lua (its state is reset) and top, never the shell
      p:line("=while true do end")
      core.sys.sleep_ms(300)
      p:keys("C-c")
      p:expect("interrupted %(the Lua state was reset%)\ndemo:/%$$")
      p:line("top")
      p:expect("Ctrl%-C to stop%)\nNAME%s+STATUS")
      p:keys("C-c")
      p:expect("demo:/%$$")
      p:line("pwd")
      p:expect("demo:/%$ pwd\n/\ndemo:/%$$")
      -- what a tty process prints shows up on its own line, before a prompt (the one
      -- after "Spawned", or the next if the run ends after that one is drawn)
      p:line("spawn chatty --executor lua --tty --content " .. shquote("print('hello from a tty')"))
      p:expect("Spawned: chatty")
      w:wait_runs(1, "chatty")
      p:keys("Enter")
      p:expect("\nhello from a tty\ndemo:/%$")
      p:expect("demo:/%$$")
      p:keys("C-d")
      p:expect("%[shell exited 0%]")
    end)
    p:close()
    if not ok then error(err, 0) end
    -- a new session: history from the file store, Up recalls the last command
    p = open_pty(w)
    ok, err = pcall(function()
      p:keys("Up")
      p:expect("demo:/%$ spawn chatty [^\n]+$")
      p:keys("C-u")
      p:line("history 3")
      p:expect("history 3\n%s+%d+  pwd\n%s+%d+  spawn chatty [^\n]+\n%s+%d+  history 3\n")
      p:line("exit")
      p:expect("%[shell exited 0%]")
    end)
    p:close()
    if not ok then error(err, 0) end
    assert.match("cat notes/a%.md\n", w:ok("cogos file get home/root/.shell_history"))
  end)

  it("attach -i forwards typed lines to the process's stdin and shows what it prints", function()
    w:ok("cogos process create echo --mode daemon --executor lua --content "
      .. shquote("print('echo: ' .. event.payload.text)"))
    local p = open_pty(w)
    local ok, err = pcall(function()
      p:line("attach -i echo")
      p:expect("attached to echo")
      p:line("typed to echo")
      p:expect("stdout echo: typed to echo", 10000)
      assert.match("typed to echo", w:ok("cogos channel read io:stdin:echo"))
      p:keys("C-c")
      p:expect("detached from echo\ndemo:/%$$")
      p:line("exit")
    end)
    p:close()
    if not ok then error(err, 0) end
  end)
end)

describe("cogos shell llm", function()
  local w
  before_each(function() w = harness.world({ FAKE_KEY = "k-secret" }) end)
  after_each(function() w:close() end)

  it("runs a prompt in the shell with every enabled capability, over a real provider", function()
    local url = w:fake_llm({ turns = {
      { content = { { type = "text", text = "Noting it." }, { type = "tool_use", name = "run_code",
        input = { code = "assert(files.write('notes/llm.md', 'from the shell'))\nprint('noted')" } } },
        usage = { input_tokens = 100, output_tokens = 20 } },
      { content = { { type = "text", text = "Noted." } }, usage = { input_tokens = 150, output_tokens = 5 } },
    } }, "k-secret")
    w:boot("--llm-provider anthropic --llm-api-key-env FAKE_KEY --llm-base-url " .. url)
    local code, out, err = w:run("cogos shell -c " .. shquote("llm please write a note; cat notes/llm.md; ps -a"))
    assert.equal(0, code, err)
    assert.match("noted\n", out)
    assert.match("tokens: 250 in, 25 out %(%d+ms%)\n", out)
    assert.match("from the shell\n", out)
    assert.match("\nshell%-%d+%s+disabled%s+one_shot%s+llm%s+yes", out)
    assert.match("Noted%.", out .. err)
    local reqs = w:llm_requests()
    assert.equal(2, #reqs)
    assert.match("please write a note", harness.slurp(w.llm_log))
    -- source: a file's content is the prompt; llm -i: prompts until exit, then commands again
    w:ok("cogos file create prompts/p.md " .. shquote("prompt from a file"))
    code, out, err = w:run("cogos shell", { stdin = "source prompts/p.md\nllm -i\nfirst of many\nexit\n"
      .. "llm -v tell me more\npwd\n" })
    assert.equal(0, code, err)
    local _, runs = out:gsub("tokens: 250 in, 25 out", "")
    assert.equal(3, runs)
    assert.match("process shell%-[%d%-]+, run [%x%-]+, model [^,]+, status completed\n", out)
    assert.match("turn 1", out) -- -v: the executor's per-turn log lines
    assert.match("\n/\n$", out)
    local log = harness.slurp(w.llm_log)
    assert.match("prompt from a file", log)
    assert.match("first of many", log)
  end)
end)
