/* test_store_sched.c — scheduling rules through the db's Lua API: the executor
 * registry and required_tags (T6/T7), idle reaping (idle_timeout_ms), the
 * throttle cooldown. */
#include "unit_db.h"

static int nwoken;

static void on_wake (void *ud, const char *id) {
  (void)ud;
  (void)id;
  nwoken++;
}

/* wakes() -> how many wake callbacks since the last call */
static int l_wakes (lua_State *L) {
  lua_pushinteger(L, nwoken);
  nwoken = 0;
  return 1;
}

static int l_sleep_ms (lua_State *L) {
  usleep((useconds_t)luaL_checkinteger(L, 1) * 1000);
  return 0;
}

static const char *prelude =
    "json = require 'json'\n"
    "store = require 'store'\n"
    "db = assert(store.open(DBPATH))\n"
    "assert(db:migrate())\n"
    "function fails(expected, v, err)\n"
    "  if v ~= nil then return false end\n"
    "  if err ~= expected then io.stderr:write('    got error: ', tostring(err), '\\n') return false end\n"
    "  return true\n"
    "end\n"
    "function daemon(name, extra)\n"
    "  local t = {name = name, mode = 'daemon'}\n"
    "  for k, v in pairs(extra or {}) do t[k] = v end\n"
    "  return assert(db:process_upsert(t))\n"
    "end\n"
    "MISSING = 'system:executor:error:missing-tags'\n"
    "function notices() return db:channel_get(MISSING) and db:messages(MISSING) or {} end\n"
    "function status(name) return db:process_get(name).status end\n";

static void run (const char *code) {
  lua_State *L = luaL_newstate();
  unit_db_openlibs(L);
  lua_register(L, "wakes", l_wakes);
  lua_register(L, "sleep_ms", l_sleep_ms);
  if (luaL_dostring(L, prelude) != LUA_OK) {
    unit_failed++;
    fprintf(stderr, "FAIL %s: prelude: %s\n", unit_current, lua_tostring(L, -1));
  } else {
    lua_getglobal(L, "db");
    store_set_wake(store_check(L, -1), on_wake, NULL);
    lua_pop(L, 1);
    nwoken = 0;
    if (luaL_dostring(L, code) != LUA_OK) {
      unit_failed++;
      fprintf(stderr, "FAIL %s: Lua error: %s\n", unit_current, lua_tostring(L, -1));
    }
  }
  lua_close(L);
  unit_db_remove(dbpath);
}

TEST(test_executor_registry) {
  run("local e = assert(db:executor_register('n1', {tags = {'cpu', 'x86'}, heartbeat_ms = 1000}))\n"
      "check(e.executor_id == 'n1' and e.status == 'idle' and e.dispatch_type == 'local')\n"
      "check(json.encode(e.executor_tags) == '[\"cpu\",\"x86\"]' and e.metadata.heartbeat_ms == 1000)\n"
      "check(e.last_heartbeat_at ~= nil and e.registered_at ~= nil)\n"
      "local bare = assert(db:executor_register('n0')); check(json.encode(bare.executor_tags) == '[]')\n"
      "check(bare.metadata.heartbeat_ms == 60000 and #db:executor_list() == 2)\n"
      /* bad input: one clear error, nothing written */
      "local bad = 'executor tags must be a list of non-empty strings'\n"
      "check(fails(bad, db:executor_register('n3', {tags = {''}})))\n"
      "check(fails(bad, db:executor_register('n3', {tags = 'gpu'})))\n"
      "check(fails(bad, db:executor_register('n3', {tags = {'a', k = 'b'}})))\n"
      "check(fails(bad, db:executor_register('n3', {tags = {1}})))\n"
      "check(fails('heartbeat_ms must be a positive integer', db:executor_register('n3', {heartbeat_ms = 0})))\n"
      "check(fails('heartbeat_ms must be a positive integer', db:executor_register('n3', {heartbeat_ms = 1.5})))\n"
      "check(fails('executor_id must not be empty', db:executor_register('')))\n"
      "check(sql(\"SELECT count(*) FROM executor WHERE executor_id = 'n3'\") == '0')\n"
      "check(fails(\"invalid executor status 'gone' (idle, busy, stale or dead)\", db:executor_set_status('n1', 'gone')))\n"
      "check(fails(\"unknown executor 'nope'\", db:executor_set_status('nope', 'idle')))\n"
      /* liveness: silent for three heartbeats -> stale; a heartbeat revives it */
      "local now = math.floor(os.time() * 1000)\n"
      "check(db:reap(now + 2000) == 0 and db:executor_list()[1].status == 'idle')\n"
      "db:reap(now + 5000)\n"
      "local st = {} for _, x in ipairs(db:executor_list()) do st[x.executor_id] = x.status end\n"
      "check(st.n1 == 'stale' and st.n0 == 'idle', st.n1)\n" /* n0 beats every 60 s */
      "check(db:heartbeat('n1') == 0 and sql(\"SELECT status FROM executor WHERE executor_id = 'n1'\") == 'idle')\n"
      /* a node recovered (its runs lost) is dead: heartbeats do not revive it, registering does */
      "check(db:recover('n1') == 0 and sql(\"SELECT status FROM executor WHERE executor_id = 'n1'\") == 'dead')\n"
      "db:heartbeat('n1'); check(sql(\"SELECT status FROM executor WHERE executor_id = 'n1'\") == 'dead')\n"
      "check(db:executor_register('n1', {tags = {'cpu'}}).status == 'idle')\n");
}

TEST(test_required_tags) {
  run("db:executor_register('n1', {tags = {'cpu'}})\n"
      /* a watcher of the notices */
      "db:channel_create(MISSING); local w = daemon('watch'); db:handler_add('watch', MISSING)\n"
      "local g = assert(db:process_upsert{name = 'g', required_tags = {'gpu', 'cpu'}})\n"
      "check(json.encode(g.required_tags) == '[\"gpu\",\"cpu\"]' and g.status == 'runnable')\n"
      /* T6: no running node carries gpu+cpu -> blocked, no run, one notice */
      "local r, err = db:dispatch('g', 'n1')\n"
      "check(r == nil and err == \"blocked: no running node carries the tags process 'g' requires (gpu, cpu)\", err)\n"
      "check(status('g') == 'blocked' and sql(\"SELECT count(*) FROM run\") == '0')\n"
      "local m = notices(); check(#m == 1)\n"
      "local p = m[1].payload\n"
      "check(p.type == 'executor:missing-tags' and p.process_id == g.id and p.process_name == 'g' and p.node_id == 'n1')\n"
      "check(json.encode(p.required_tags) == '[\"gpu\",\"cpu\"]' and json.encode(p.missing_tags) == '[\"gpu\"]')\n"
      "check(status('watch') == 'runnable')\n" /* the notice is a message like any other */
      /* it stays blocked: no blocked/runnable churn, no second notice */
      "for i = 1, 3 do check(db:unblock() == 0) db:reconcile() end\n"
      "check(status('g') == 'blocked' and #notices() == 1)\n"
      /* no requirement, or one the node meets: runs */
      "db:process_upsert{name = 'plain'}; check(assert(db:dispatch('plain', 'n1')).status == 'running')\n"
      "db:process_upsert{name = 'c', required_tags = {'cpu'}}; check(assert(db:dispatch('c', 'n1')).node_id == 'n1')\n"
      "db:process_upsert{name = 'e', required_tags = json.array()}; check(assert(db:dispatch('e', 'n1')))\n"
      /* T7: a node that carries them appears: runnable again (a wake-up), and it is the one that runs it */
      "db:executor_register('n2', {tags = {'x', 'gpu', 'cpu'}}); wakes()\n"
      "check(db:unblock() == 1 and status('g') == 'runnable' and wakes() == 1)\n"
      "local r1, e1 = db:dispatch('g', 'n1')\n"
      "check(r1 == nil and e1 == \"node 'n1' lacks the tags gpu that process 'g' requires; a running node carries them\", e1)\n"
      "check(status('g') == 'runnable' and #notices() == 1)\n"
      "check(assert(db:dispatch('g', 'n2')).node_id == 'n2')\n"
      /* that node gone: the next one needing gpu blocks again, with its own notice */
      "db:executor_set_status('n2', 'dead'); db:process_upsert{name = 'h', required_tags = {'gpu'}}\n"
      "local r2, e2 = db:dispatch('h'); check(r2 == nil and e2:find('^blocked: ') ~= nil and #notices() == 2, e2)\n"
      "check(notices()[1].payload.node_id == nil and json.encode(notices()[1].payload.missing_tags) == '[\"gpu\"]')\n"
      /* a stale node is not running either */
      "db:executor_register('n2', {tags = {'gpu'}}); db:executor_set_status('n2', 'stale')\n"
      "check(db:unblock() == 0 and status('h') == 'blocked')\n"
      "db:heartbeat('n2'); check(db:unblock() == 1 and status('h') == 'runnable')\n"
      /* resources still gate: tags met, pool exhausted -> blocked by the resource */
      "db:resource_upsert{name = 'one', capacity = 0}; db:process_upsert{name = 'k', required_tags = {'gpu'}, resources = {'one'}}\n"
      "local r3, e3 = db:dispatch('k', 'n2'); check(r3 == nil and e3 == \"blocked: resource 'one' exhausted\", e3)\n"
      "check(#notices() == 2)\n");
}

TEST(test_idle_reaping) {
  run("local P = daemon('P')\n"
      "local function exits(c) local ch = 'spawn:' .. c .. '\\u{2192}' .. P.id\n"
      "  return db:channel_get(ch) and db:messages(ch) or {} end\n"
      /* never ran: idle since it was created */
      "local A = daemon('A', {parent_process = 'P', idle_timeout_ms = 100})\n"
      "local B = daemon('B', {parent_process = 'P'})\n" /* no timeout: never reaped */
      "local O = assert(db:process_upsert{name = 'O', idle_timeout_ms = 50, status = 'waiting'})\n" /* not a daemon */
      "local R = daemon('R', {idle_timeout_ms = 50, status = 'runnable'})\n" /* not waiting */
      "check(A.idle_timeout_ms == 100 and db:reconcile().reaped == 0 and status('A') == 'waiting')\n"
      "sleep_ms(150)\n"
      "local rec = db:reconcile(); check(rec.reaped == 1, rec.reaped)\n"
      "check(status('A') == 'completed' and status('B') == 'waiting' and status('O') == 'waiting' and status('R') == 'runnable')\n"
      "local e = exits(A.id)\n"
      "check(#e == 1 and e[1].payload.type == 'child:exited' and e[1].payload.exit_code == 0 and e[1].payload.process_id == A.id)\n"
      "check(e[1].payload.run_id == nil)\n"
      /* once: later passes and a disable say nothing more */
      "check(db:reconcile().reaped == 0); db:process_disable('A'); check(#exits(A.id) == 1)\n"
      /* a run restarts the clock: idle since its last run ended */
      "local C = daemon('C', {parent_process = 'P', idle_timeout_ms = 300}); db:channel_create('c'); db:handler_add('C', 'c')\n"
      "sleep_ms(200); db:send('c', {}); local rc = assert(db:dispatch('C')); sleep_ms(200); db:run_finish(rc.id)\n"
      "sleep_ms(150); check(db:reconcile().reaped == 0 and status('C') == 'waiting')\n"
      "sleep_ms(200); check(db:reconcile().reaped == 1 and status('C') == 'completed')\n"
      "check(exits(C.id)[1].payload.run_id == rc.id)\n"
      /* something owed is not idle: a pending wait (its deliveries wait with it) */
      "local D = daemon('D', {idle_timeout_ms = 50}); local K = daemon('K', {parent_process = 'D'})\n"
      "assert(db:wait_add{process = D.id, type = 'wait', pending = {K.id}})\n"
      "sleep_ms(100); check(db:reconcile().reaped == 0 and status('D') == 'waiting')\n"
      /* the reaped child's exit resolves a waiter: a parent waiting on it wakes */
      "local Q = daemon('Q'); local W = daemon('W', {parent_process = 'Q', idle_timeout_ms = 50})\n"
      "assert(db:wait_add{process = Q.id, type = 'wait_all', pending = {W.id}}); wakes()\n"
      "sleep_ms(100); check(db:reconcile().reaped == 1 and status('W') == 'completed')\n"
      "check(status('Q') == 'runnable' and db:wait_get(Q.id) == nil and wakes() >= 1)\n"
      "check(db:wait_results(Q.id).children[W.id].exit_code == 0)\n"
      /* no parent: completed, nobody told */
      "local N = daemon('N', {idle_timeout_ms = 50}); sleep_ms(100); check(db:reconcile().reaped == 1 and status('N') == 'completed')\n"
      "check(sql(\"SELECT count(*) FROM channel WHERE name LIKE 'spawn:\" .. N.id .. \"%'\") == '0')\n"
      /* a revived daemon starts a new idle period */
      "daemon('N', {status = 'waiting'}); check(db:reconcile().reaped == 0 and status('N') == 'waiting')\n");
}

TEST(test_throttle_cooldown) {
  run("db:channel_create('in'); daemon('d'); db:handler_add('d', 'in'); db:process_upsert{name = 'o'}\n"
      "for i = 1, 6 do db:send('in', {i = i}) end\n"
      "local function names() local t = {} for _, r in ipairs(assert(db:runnable(200))) do t[#t + 1] = r.name end\n"
      "  table.sort(t) return table.concat(t, ',') end\n"
      "local function finish(st) local r = assert(db:dispatch('d')); assert(db:run_finish(r.id, {status = st})); return r end\n"
      "check(names() == 'd,o')\n"
      /* a plain failure: no cooldown */
      "finish('failed'); check(names() == 'd,o' and db:meta_get('scheduler:throttled_at') == nil)\n"
      /* a throttled run: nothing new is dispatched for the window (5 min by default) */
      "local r = finish('throttled')\n"
      "check(db:meta_get('scheduler:throttled_at') == db:run_get(r.id).completed_at)\n"
      "check(names() == '' and status('d') == 'runnable' and status('o') == 'runnable')\n"
      /* an older throttled run does not count */
      "local old = os.date('!%Y-%m-%dT%H:%M:%S', os.time() - 301) .. '.000Z'\n"
      "db:meta_set('scheduler:throttled_at', old); check(names() == 'd,o')\n"
      "finish('completed')\n" /* (throttled runs count for the breaker: break the series) */
      /* the window is a setting: 150 ms, then over */
      "db:meta_set('scheduler:throttle_cooldown_ms', '150'); finish('throttled'); check(names() == '')\n"
      "sleep_ms(200); check(names() == 'd,o')\n"
      /* 0: off */
      "db:meta_set('scheduler:throttle_cooldown_ms', '0'); finish('throttled'); check(names() == 'd,o')\n"
      "db:meta_set('scheduler:throttle_cooldown_ms', 'soon')\n"
      "check(fails('meta scheduler:throttle_cooldown_ms must be a non-negative integer (ms)', db:runnable(200)))\n"
      /* a throttled one_shot with no retries left: disabled, its parent hears exit_code 3 */
      "db:meta_set('scheduler:throttle_cooldown_ms', '300000')\n"
      "local P = daemon('P'); local T = assert(db:process_upsert{name = 'T', parent_process = 'P'})\n"
      "local rt = assert(db:dispatch('T')); db:run_finish(rt.id, {status = 'throttled', error = 'anthropic: HTTP 429: slow down'})\n"
      "local ex = db:messages('spawn:' .. T.id .. '\\u{2192}' .. P.id)[1].payload\n"
      "check(status('T') == 'disabled' and ex.exit_code == 3 and ex.error == 'anthropic: HTTP 429: slow down')\n");
}

int main (void) {
  if (unit_db_begin("sched") < 0) return 1;
  RUN(test_executor_registry);
  RUN(test_required_tags);
  RUN(test_idle_reaping);
  RUN(test_throttle_cooldown);
  unit_db_end();
  return unit_report();
}
