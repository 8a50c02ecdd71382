-- Bench helper run as another process: sends N messages, each carrying the
-- system-wide monotonic time of the send, and pokes the node after each commit.
local core = require "cogos.core"
local db_path, sock, n = ...
local db = assert(core.store.open(db_path))
for _ = 1, tonumber(n) do
  db:send("demo:inbox", { text = "bench", t = core.sys.monotonic_ms() })
  core.loop.notify(sock, "wake")
  core.sys.sleep_ms(10) -- one message every 10 ms: latency, not lock contention
end
db:close()
