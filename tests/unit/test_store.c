/* test_store.c — the store through its Lua API: every rule of the data model,
 * transactions, errors; raw SQL (a second connection) checks what the API hides. */
#include "unit_db.h"

/* {============ harness */

static int l_group_open (lua_State *L) {
  store_group_open(store_check(L, 1));
  return 0;
}

static int l_group_close (lua_State *L) {
  lua_pushboolean(L, store_group_close(store_check(L, 1)) == 0);
  return 1;
}

/* The wake callback records process ids; wakes() returns and clears them. */
static char woken[64][40];
static int nwoken;

static void on_wake (void *ud, const char *id) {
  (void)ud;
  if (nwoken < 64) snprintf(woken[nwoken++], sizeof woken[0], "%s", id);
}

static int l_wakes (lua_State *L) {
  lua_createtable(L, nwoken, 0);
  for (int i = 0; i < nwoken; i++) {
    lua_pushstring(L, woken[i]);
    lua_rawseti(L, -2, i + 1);
  }
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
    "assert(db:migrate() == 4)\n"
    "function count(t) local n = 0 for _ in pairs(t) do n = n + 1 end return n end\n"
    "function fails(expected, v, err)\n"
    "  if v ~= nil then return false end\n"
    "  if err ~= expected then io.stderr:write('    got error: ', tostring(err), '\\n') return false end\n"
    "  return true\n"
    "end\n"
    "function raises(pattern, f, ...)\n"
    "  local ok, err = pcall(f, ...)\n"
    "  if ok then return false end\n"
    "  if not tostring(err):find(pattern) then io.stderr:write('    raised: ', tostring(err), '\\n') return false end\n"
    "  return true\n"
    "end\n"
    "function daemon(name, extra)\n"
    "  local t = {name = name, mode = 'daemon'}\n"
    "  for k, v in pairs(extra or {}) do t[k] = v end\n"
    "  return assert(db:process_upsert(t))\n"
    "end\n"
    "function pending(pid) return tonumber(sql(\"SELECT count(*) FROM delivery WHERE status = 'pending' AND process = '\" .. pid .. \"'\")) end\n";

static lua_State *new_state (void) {
  lua_State *L = luaL_newstate();
  unit_db_openlibs(L);
  lua_register(L, "wakes", l_wakes);
  lua_register(L, "group_open", l_group_open);
  lua_register(L, "group_close", l_group_close);
  lua_register(L, "sleep_ms", l_sleep_ms);
  if (luaL_dostring(L, prelude) != LUA_OK) {
    fprintf(stderr, "prelude: %s\n", lua_tostring(L, -1));
    exit(1);
  }
  lua_getglobal(L, "db");
  store_set_wake(store_check(L, -1), on_wake, NULL);
  lua_pop(L, 1);
  nwoken = 0;
  return L;
}

static void run (lua_State *L, const char *code) {
  if (luaL_dostring(L, code) != LUA_OK) {
    unit_failed++;
    fprintf(stderr, "FAIL %s: Lua error: %s\n", unit_current, lua_tostring(L, -1));
    lua_pop(L, 1);
  }
}

static void done (lua_State *L) {
  lua_close(L);
  unit_db_remove(dbpath);
}

/* }============ */

TEST(test_open_migrate_meta) {
  lua_State *L = new_state();
  run(L,
      "check(db:migrate() == 4)\n" /* idempotent */
      "check(db:meta_get('schema_version') == '4') check(db:meta_get('epoch') == '0')\n"
      "check(db:meta_get('nope') == nil)\n"
      "check(db:meta_set('k', 'v') == true and db:meta_get('k') == 'v')\n"
      "db:meta_set('k', 'w') check(db:meta_get('k') == 'w')\n"
      "db:meta_set('k', nil) check(db:meta_get('k') == nil)\n"
      "check(sql('PRAGMA journal_mode') == 'wal')\n"
      "check(raises('synchronous', store.open, DBPATH, {synchronous = 'sometimes'}))\n"
      "local full = assert(store.open(DBPATH, {synchronous = 'full'})); check(full:meta_get('epoch') == '0')\n"
      "full:close() check(raises('closed', full.meta_get, full, 'epoch'))\n"
      "local bad, err = store.open('/nonexistent/dir/x.db'); check(bad == nil and err:find('store:') ~= nil, err)\n"
      "check(tostring(db):find('sqlite') ~= nil)\n");
  done(L);
}

TEST(test_process_upsert) {
  lua_State *L = new_state();
  run(L,
      "local d = daemon('d1', {priority = 2.5, metadata = {a = json.array(), b = {}, c = {1, 2}}})\n"
      "check(#d.id == 36 and d.id:sub(15, 15) == '7', d.id)\n"
      "check(d.name == 'd1' and d.mode == 'daemon' and d.status == 'waiting' and d.epoch == 0)\n"
      "check(d.runnable_since == nil and d.priority == 2.5 and math.type(d.max_retries) == 'integer')\n"
      "check(d.tty == false and d.preemptible == false and d.executor == 'llm' and d.content == '')\n"
      "check(json.is_array(d.resources) and #d.resources == 0 and json.is_array(d.required_tags))\n"
      "check(json.is_array(d.metadata.a) and not json.is_array(d.metadata.b) and json.is_array(d.metadata.c))\n"
      "check(json.encode(d.metadata) == '{\"a\":[],\"b\":{},\"c\":[1,2]}')\n"
      "check(d.created_at:match('^%d%d%d%d%-%d%d%-%d%dT%d%d:%d%d:%d%d%.%d%d%dZ$') ~= nil, d.created_at)\n"
      "check(#wakes() == 0)\n" /* a waiting daemon wakes nobody */
      /* one_shot starts runnable and wakes */
      "local o = assert(db:process_upsert{name = 'o1', content = 'hi', tty = true, max_retries = 3})\n"
      "check(o.mode == 'one_shot' and o.status == 'runnable' and o.runnable_since ~= nil and o.tty == true)\n"
      "local w = wakes(); check(#w == 1 and w[1] == o.id)\n"
      /* upsert keeps id, created_at and fields not given */
      "local function same_row(a, b) for k, v in pairs(a) do if json.encode(b[k]) ~= json.encode(v) or math.type(b[k]) ~= math.type(v) then return false, k end end\n"
      "  for k in pairs(b) do if a[k] == nil then return false, k end end return true end\n"
      "check(same_row(d, db:process_get(d.id)))\n" /* the row upsert returns is the row stored */
      "local d2 = daemon('d1', {content = 'new'})\n"
      "check(same_row(d2, db:process_get('d1')))\n"
      "check(d2.id == d.id and d2.created_at == d.created_at and d2.content == 'new' and d2.priority == 2.5)\n"
      "check(d2.metadata.b ~= nil and json.is_array(d2.metadata.a))\n"
      "check(tonumber(sql(\"SELECT count(*) FROM channel WHERE name LIKE 'io:%:d1'\")) == 0)\n"
      "check(tonumber(sql(\"SELECT count(*) FROM handler WHERE process = '\" .. d.id .. \"'\")) == 0)\n"
      /* parent: given sets it, absent keeps it, json.null clears it */
      "local c1 = assert(db:process_upsert{name = 'c1', parent_process = 'd1'}); check(c1.parent_process == d.id)\n"
      "c1 = assert(db:process_upsert{name = 'c1', content = 'x'}); check(c1.parent_process == d.id)\n"
      "c1 = assert(db:process_upsert{name = 'c1', parent_process = o.id}); check(c1.parent_process == o.id)\n"
      "c1 = assert(db:process_upsert{name = 'c1', parent_process = json.null}); check(c1.parent_process == nil)\n"
      "check(fails(\"unknown process 'nope'\", db:process_upsert{name = 'c2', parent_process = 'nope'}))\n"
      "check(select(2, db:process_get('c2')) == \"unknown process 'c2'\")\n"
      /* status on upsert follows the runnable_since rule and wakes */
      "wakes() local r = daemon('d1', {status = 'runnable'}); check(r.status == 'runnable' and r.runnable_since ~= nil)\n"
      "check(#wakes() == 1)\n"
      "local r2 = daemon('d1', {status = 'runnable'}); check(r2.runnable_since == r.runnable_since and #wakes() == 0)\n"
      "r2 = daemon('d1', {status = 'waiting'}); check(r2.runnable_since == nil)\n"
      "local m = daemon('d1', {model = 'm1'}); check(m.model == 'm1')\n"
      "m = daemon('d1', {model = json.null}); check(m.model == nil)\n"
      /* errors */
      "check(fails(\"invalid status 'bogus'\", db:process_upsert{name = 'x', status = 'bogus'}))\n"
      "check(fails(\"invalid mode 'forever'\", db:process_upsert{name = 'x', mode = 'forever'}))\n"
      "check(fails('process name must not be empty', db:process_upsert{name = ''}))\n"
      "check(raises(\"unknown field 'colour'\", db.process_upsert, db, {name = 'x', colour = 'red'}))\n"
      "check(raises(\"field 'id' cannot be set\", db.process_upsert, db, {name = 'x', id = 'y'}))\n"
      "check(raises(\"'name' is required\", db.process_upsert, db, {content = 'x'}))\n"
      "check(raises(\"bad field 'priority'\", db.process_upsert, db, {name = 'x', priority = 'high'}))\n"
      "check(raises(\"bad field 'max_retries'\", db.process_upsert, db, {name = 'x', max_retries = 1.5}))\n"
      "check(raises(\"bad field 'tty'\", db.process_upsert, db, {name = 'x', tty = 1}))\n"
      "check(raises(\"cannot be null\", db.process_upsert, db, {name = 'x', content = json.null}))\n"
      "check(fails(\"process_upsert: field 'metadata': cannot encode a function at $.f\",\n"
      "  db:process_upsert{name = 'x', metadata = {f = print}}))\n"
      "check(db:process_get('x') == nil)\n"
      "check(raises('table expected', db.process_upsert, db, 'x'))\n"
      /* get and list */
      "check(db:process_get(d.id).name == 'd1' and db:process_get('d1').id == d.id)\n"
      "check(fails(\"unknown process 'ghost'\", db:process_get('ghost')))\n"
      "check(fails(\"unknown process '00000000-0000-7000-8000-000000000000'\", db:process_get('00000000-0000-7000-8000-000000000000')))\n"
      "local all = db:process_list(); check(#all == 3 and all[1].name == 'c1' and all[3].name == 'o1')\n"
      "check(#db:process_list{status = 'runnable'} == 2 and #db:process_list{status = 'disabled'} == 0)\n"
      "check(json.is_array(db:process_list{status = 'disabled'}))\n");
  done(L);
}

TEST(test_set_status) {
  lua_State *L = new_state();
  run(L,
      "local d = daemon('d')\n"
      "local r = assert(db:process_set_status(d.id, 'runnable')); check(r.status == 'runnable' and r.runnable_since)\n"
      "check(#wakes() == 1)\n"
      "local r2 = db:process_set_status('d', 'runnable'); check(r2.runnable_since == r.runnable_since and #wakes() == 0)\n"
      "for _, st in ipairs{'waiting', 'running', 'blocked', 'suspended', 'completed', 'disabled'} do\n"
      "  local x = db:process_set_status('d', st); check(x.status == st and x.runnable_since == nil, st)\n"
      "end\n"
      "check(fails(\"invalid status 'zombie'\", db:process_set_status('d', 'zombie')))\n"
      "check(fails(\"unknown process 'q'\", db:process_set_status('q', 'waiting')))\n");
  done(L);
}

TEST(test_disable_cascade) {
  lua_State *L = new_state();
  run(L,
      "local root = daemon('root')\n"
      "local c1 = daemon('c1', {parent_process = 'root'})\n"
      "local c2 = assert(db:process_upsert{name = 'c2', parent_process = 'root'})\n"
      "local g1 = daemon('g1', {parent_process = 'c1'})\n"
      "local u = daemon('u')\n"
      "sql(\"INSERT INTO wait_condition (id, process, type, status, pending, created_at) VALUES \"\n"
      "  .. \"('w1', '\" .. g1.id .. \"', 'wait', 'pending', '[]', 'now')\")\n"
      "sql(\"INSERT INTO wait_condition (id, process, type, status, pending, created_at) VALUES \"\n"
      "  .. \"('w2', '\" .. u.id .. \"', 'wait', 'pending', '[]', 'now')\")\n"
      "check(db:process_disable('root') == 4)\n"
      "for _, n in ipairs{'root', 'c1', 'c2', 'g1'} do check(db:process_get(n).status == 'disabled', n) end\n"
      "check(db:process_get('c2').runnable_since == nil)\n"
      "check(db:process_get('u').status == 'waiting')\n"
      "check(sql(\"SELECT status FROM wait_condition WHERE id = 'w1'\") == 'resolved')\n"
      "check(sql(\"SELECT resolved_at FROM wait_condition WHERE id = 'w1'\") ~= nil)\n"
      "check(sql(\"SELECT status FROM wait_condition WHERE id = 'w2'\") == 'pending')\n"
      "check(db:process_disable('root') == 0)\n"
      /* a parent cycle still terminates */
      "daemon('a') daemon('b', {parent_process = 'a'}) daemon('a', {parent_process = 'b'})\n"
      "check(db:process_disable('a') == 2)\n"
      "check(fails(\"unknown process 'zz'\", db:process_disable('zz')))\n");
  done(L);
}

TEST(test_send) {
  lua_State *L = new_state();
  run(L,
      "local d = daemon('d')\n"
      "check(db:channel_create('in'))\n"
      "assert(db:handler_add(d.id, 'in'))\n"
      "local r = assert(db:send('in', {x = 1}))\n"
      "check(r.deliveries == 1 and r.duplicate == false and r.channel == 'in' and #r.id == 36)\n"
      "check(#r.woken == 1 and r.woken[1] == d.id and json.is_array(r.woken))\n"
      "local w = wakes(); check(#w == 1 and w[1] == d.id)\n"
      "check(db:process_get('d').status == 'runnable' and pending(d.id) == 1)\n"
      /* already runnable: a delivery, no wake */
      "r = db:send('in', {x = 2}); check(r.deliveries == 1 and #r.woken == 0 and #wakes() == 0 and pending(d.id) == 2)\n"
      /* running: a delivery, no wake, still running */
      "local run = assert(db:dispatch(d.id, 'n1'))\n"
      "r = db:send('in', {x = 3}); check(r.deliveries == 1 and #r.woken == 0 and #wakes() == 0)\n"
      "check(db:process_get('d').status == 'running')\n"
      /* no handler, no delivery */
      "db:channel_create('empty'); r = db:send('empty', {}); check(r.deliveries == 0 and #r.woken == 0)\n"
      "check(sql(\"SELECT count(*) FROM delivery WHERE message = '\" .. r.id .. \"'\") == '0')\n"
      /* fan-out: one delivery per handler; disabled and condition-bound processes are not woken */
      "db:channel_create('fan')\n"
      "local a, b, c = daemon('a'), daemon('b'), daemon('c')\n"
      "local off = daemon('off'); db:process_set_status('off', 'disabled')\n"
      "local cond = daemon('cond')\n"
      "sql(\"INSERT INTO wait_condition (id, process, type, status, pending, created_at) VALUES \"\n"
      "  .. \"('w', '\" .. cond.id .. \"', 'wait', 'pending', '[]', 'now')\")\n"
      "for _, p in ipairs{a, b, c, off, cond} do db:handler_add(p.id, 'fan') end\n"
      "wakes() r = db:send('fan', {n = 1}); check(r.deliveries == 5 and #r.woken == 3, r.deliveries .. ' ' .. #r.woken)\n"
      "check(#wakes() == 3)\n"
      "for _, p in ipairs{a, b, c} do check(db:process_get(p.id).status == 'runnable' and pending(p.id) == 1) end\n"
      "check(db:process_get('off').status == 'disabled' and pending(off.id) == 1)\n"
      "check(db:process_get('cond').status == 'waiting' and pending(cond.id) == 1)\n"
      "check(tonumber(sql(\"SELECT count(DISTINCT handler) FROM delivery WHERE message = '\" .. r.id .. \"'\")) == 5)\n"
      /* idempotency key */
      "local k1 = assert(db:send('fan', {n = 2}, {idempotency_key = 'k'})); check(k1.deliveries == 5 and not k1.duplicate)\n"
      "local k2 = assert(db:send('fan', {n = 3}, {idempotency_key = 'k'}))\n"
      "check(k2.id == k1.id and k2.duplicate == true and k2.deliveries == 0 and #k2.woken == 0)\n"
      "check(#db:messages('fan') == 2 and db:messages('fan')[1].payload.n == 2)\n"
      "local k3 = assert(db:send('in', {n = 4}, {idempotency_key = 'k'})); check(k3.id ~= k1.id and not k3.duplicate)\n"
      /* payload must be a JSON object */
      "local obj = 'payload must be a JSON object'\n"
      "check(fails(obj, db:send('in', 'text'))) check(fails(obj, db:send('in', {1, 2})))\n"
      "check(fails(obj, db:send('in', json.array()))) check(fails(obj, db:send('in', 42)))\n"
      "check(fails(obj, db:send('in', nil)))\n"
      "check(fails('payload: cannot encode a function at $.f', db:send('in', {f = print})))\n"
      "check(fails(\"unknown channel 'nope'\", db:send('nope', {})))\n"
      /* [] and {} survive the round trip */
      "db:send('empty', {a = json.array(), b = {}, c = {1, 2}, d = {e = json.null}, f = 1.0, g = 2^53})\n"
      "local m = db:messages('empty', {limit = 1})[1].payload\n"
      "check(json.is_array(m.a) and #m.a == 0 and not json.is_array(m.b) and next(m.b) == nil)\n"
      "check(json.is_array(m.c) and m.c[2] == 2 and m.d.e == json.null)\n"
      "check(math.type(m.f) == 'float' and math.type(m.g) == 'float')\n"
      /* sender fields and trace */
      "db:send('empty', {}, {sender_process = d.id, sender_run_id = run.id, trace_id = 't1', trace_meta = {span_id = 's'}})\n"
      "local last = db:messages('empty', {limit = 1})[1]\n"
      "check(last.sender_process == d.id and last.sender_run_id == run.id and last.trace_id == 't1')\n"
      "check(last.trace_meta.span_id == 's' and last.channel == 'empty')\n"
      "check(raises(\"bad field 'trace_id'\", db.send, db, 'empty', {}, {trace_id = 5}))\n");
  done(L);
}

TEST(test_messages_order) {
  lua_State *L = new_state();
  run(L,
      "db:channel_create('c')\n"
      "for i = 1, 300 do db:send('c', {i = i}) end\n" /* many per millisecond: the id breaks ties */
      "local ms = db:messages('c', {limit = 1000}); check(#ms == 300)\n"
      "local ordered = true for i, m in ipairs(ms) do if m.payload.i ~= 301 - i then ordered = false end end\n"
      "check(ordered, 'newest first')\n"
      "check(#db:messages('c') == 100 and db:messages('c')[1].payload.i == 300)\n"
      "local first = db:messages('c', {limit = 300})[300]; check(first.payload.i == 1)\n"
      "local since = db:messages('c', {since = '2000-01-01T00:00:00.000Z', limit = 5})\n"
      "check(#since == 5 and since[1].payload.i == 1 and since[5].payload.i == 5)\n"
      "check(#db:messages('c', {since = ms[1].created_at}) == 0)\n"
      "check(#db:messages('c', {since = '2999-01-01T00:00:00.000Z'}) == 0)\n"
      "check(fails(\"unknown channel 'x'\", db:messages('x')))\n"
      "check(json.encode(db:messages('c', {since = '2999'})) == '[]')\n");
  done(L);
}

TEST(test_wait_resolution) {
  lua_State *L = new_state();
  run(L,
      "local P = daemon('parent'); db:channel_create('kids'); db:handler_add('parent', 'kids')\n"
      "local function cond(id, pid, type, pending, run)\n"
      "  sql(string.format(\"INSERT INTO wait_condition (id, run, process, type, status, pending, created_at) \"\n"
      "    .. \"VALUES ('%s', %s, '%s', '%s', 'pending', '%s', '2026-01-01T00:00:00.000Z')\", id,\n"
      "    run and (\"'\" .. run .. \"'\") or 'NULL', pid, type, pending))\n"
      "end\n"
      "local function wc(id, col) return sql(\"SELECT \" .. col .. \" FROM wait_condition WHERE id = '\" .. id .. \"'\") end\n"
      /* wait_all: resolved when the last awaited child has exited */
      "cond('wa', P.id, 'wait_all', '[\"c1\",\"c2\"]')\n"
      "local r = db:send('kids', {type = 'child:exited'}, {sender_process = 'c1'})\n"
      "check(r.deliveries == 1 and #r.woken == 0 and wc('wa', 'pending') == '[\"c2\"]' and wc('wa', 'status') == 'pending')\n"
      "r = db:send('kids', {type = 'progress'}, {sender_process = 'c2'})\n" /* only child:exited counts */
      "check(#r.woken == 0 and wc('wa', 'pending') == '[\"c2\"]')\n"
      "r = db:send('kids', {type = 'child:exited'}, {sender_process = 'c2'})\n"
      "check(#r.woken == 1 and r.woken[1] == P.id and wc('wa', 'status') == 'resolved' and wc('wa', 'pending') == '[]')\n"
      "check(wc('wa', 'resolved_at') ~= nil and db:process_get('parent').status == 'runnable' and #wakes() == 1)\n"
      /* wait / wait_any resolve on any exit (membership is not checked) */
      "db:process_set_status('parent', 'waiting')\n"
      "cond('w1', P.id, 'wait_any', '[\"x\"]')\n"
      "r = db:send('kids', {type = 'child:exited'}, {sender_process = 'y'})\n"
      "check(#r.woken == 1 and wc('w1', 'status') == 'resolved' and wc('w1', 'pending') == '[\"x\"]')\n"
      /* no sender, nothing to resolve */
      "db:process_set_status('parent', 'waiting') cond('w2', P.id, 'wait', '[\"x\"]')\n"
      "r = db:send('kids', {type = 'child:exited'}); check(#r.woken == 0 and wc('w2', 'status') == 'pending')\n"
      /* process-linked conditions go before run-linked ones */
      "sql(\"UPDATE wait_condition SET status = 'resolved' WHERE id = 'w2'\")\n"
      "sql(\"INSERT INTO run (id, process, status, created_at) VALUES ('r1', '\" .. P.id .. \"', 'suspended', 'x')\")\n"
      "cond('wr', P.id, 'wait', '[\"a\"]', 'r1') cond('wp', P.id, 'wait_all', '[\"a\",\"b\"]')\n"
      "r = db:send('kids', {type = 'child:exited'}, {sender_process = 'a'})\n"
      "check(#r.woken == 0 and wc('wp', 'pending') == '[\"b\"]' and wc('wr', 'status') == 'pending')\n"
      "r = db:send('kids', {type = 'child:exited'}, {sender_process = 'b'})\n" /* wp resolves; wr still pending */
      "check(#r.woken == 0 and wc('wp', 'status') == 'resolved' and wc('wr', 'status') == 'pending')\n"
      "r = db:send('kids', {type = 'child:exited'}, {sender_process = 'z'})\n"
      "check(#r.woken == 1 and wc('wr', 'status') == 'resolved' and db:process_get('parent').status == 'runnable')\n");
  done(L);
}

TEST(test_dispatch) {
  lua_State *L = new_state();
  run(L,
      "local d = daemon('d')\n"
      "db:channel_create('A') db:channel_create('B')\n"
      "db:handler_add('d', 'A') db:handler_add('d', 'B')\n"
      "local m1 = db:send('A', {n = 1}); local m2 = db:send('B', {n = 2}); local m3 = db:send('A', {n = 3})\n"
      "wakes()\n"
      "local r = assert(db:dispatch(d.id, 'node-1'))\n"
      "check(r.status == 'running' and r.process == d.id and r.node_id == 'node-1' and r.heartbeat_at ~= nil)\n"
      "check(r.message == m1.id and r.channel == 'A' and r.payload.n == 1 and r.epoch == 0)\n"
      "check(r.tokens_in == 0 and r.cost_usd == 0 and json.is_array(r.scope_log) and r.completed_at == nil)\n"
      "check(db:process_get('d').status == 'running' and db:process_get('d').runnable_since == nil)\n"
      "check(sql(\"SELECT status FROM delivery WHERE run = '\" .. r.id .. \"'\") == 'queued')\n"
      "check(pending(d.id) == 2)\n"
      /* the row dispatch returns is the row stored */
      "local stored = db:run_get(r.id)\n"
      "for k, v in pairs(stored) do if type(v) ~= 'table' then check(r[k] == v and math.type(r[k]) == math.type(v), k) end end\n"
      "for k, v in pairs(r) do if type(v) ~= 'table' then check(stored[k] == v, k) end end\n"
      "check(json.encode(r.scope_log) == json.encode(stored.scope_log) and json.encode(r.metadata) == json.encode(stored.metadata))\n"
      "check(json.encode(r.payload) == json.encode(stored.payload))\n"
      "local again, err = db:dispatch(d.id); check(again == nil and err:find('not runnable'))\n"
      /* backlog: runnable again, and the next run takes the next oldest */
      "local p = assert(db:run_finish(r.id, {status = 'completed'})); check(p.status == 'runnable' and p.runnable_since)\n"
      "check(#wakes() == 1)\n"
      "check(sql(\"SELECT status FROM delivery WHERE run = '\" .. r.id .. \"'\") == 'delivered')\n"
      "local r2 = db:dispatch('d'); check(r2.message == m2.id and r2.channel == 'B' and r2.node_id == nil)\n"
      "check(db:run_finish(r2.id).status == 'runnable')\n"
      "local r3 = db:dispatch('d'); check(r3.message == m3.id and r3.payload.n == 3)\n"
      "check(db:run_finish(r3.id).status == 'waiting' and #wakes() == 1)\n"
      "check(pending(d.id) == 0)\n"
      /* no delivery: the run has no message */
      "local o = db:process_upsert{name = 'o'}\n"
      "local ro = db:dispatch(o.id); check(ro and ro.message == nil and ro.channel == nil and ro.payload == nil)\n"
      "check(fails(\"unknown process 'ghost'\", db:dispatch('ghost')))\n"
      "local g = db:run_get(r.id); check(g.id == r.id and g.status == 'completed' and g.channel == 'A')\n"
      "check(fails(\"unknown run 'nope'\", db:run_get('nope')))\n"
      "local l = db:run_list{process = 'd'}; check(#l == 3 and l[1].id == r3.id and l[3].id == r.id)\n"
      "check(#db:run_list{process = 'd', limit = 1} == 1 and #db:run_list() == 4)\n"
      "check(fails(\"unknown process 'zz'\", db:run_list{process = 'zz'}))\n");
  done(L);
}

TEST(test_run_finish) {
  lua_State *L = new_state();
  run(L,
      /* one_shot success */
      "local o = db:process_upsert{name = 'o'}\n"
      "local r = db:dispatch(o.id)\n"
      "local p = assert(db:run_finish(r.id, {status = 'completed', tokens_in = 10, tokens_out = 20,\n"
      "  cost_usd = 0.25, duration_ms = 1500, model_version = 'm-1', result = {output = {1, json.array()}}}))\n"
      "check(p.status == 'completed' and p.runnable_since == nil)\n"
      "local g = db:run_get(r.id)\n"
      "check(g.status == 'completed' and g.tokens_in == 10 and g.tokens_out == 20 and g.cost_usd == 0.25)\n"
      "check(g.duration_ms == 1500 and g.model_version == 'm-1' and g.completed_at ~= nil)\n"
      "check(json.is_array(g.result.output[2]) and g.result.output[1] == 1)\n"
      "check(fails(\"run '\" .. r.id .. \"' is not running (completed)\", db:run_finish(r.id)))\n"
      /* one_shot failure: retries, then disabled */
      "local f = db:process_upsert{name = 'f', max_retries = 2}\n"
      "local function fail_once() local run = db:dispatch('f'); return db:run_finish(run.id, {status = 'failed', error = 'boom'}) end\n"
      "wakes()\n"
      "local a = fail_once(); check(a.status == 'runnable' and a.retry_count == 1 and a.retry_at == nil)\n"
      "check(#wakes() == 1)\n"
      "local b = fail_once(); check(b.status == 'runnable' and b.retry_count == 2)\n"
      "local c = fail_once(); check(c.status == 'disabled' and c.retry_count == 2 and #wakes() == 1)\n"
      "check(db:run_list{process = 'f'}[1].error == 'boom')\n"
      "local z = db:process_upsert{name = 'z'}; local zr = db:dispatch('z')\n"
      "check(db:run_finish(zr.id, {status = 'timeout'}).status == 'disabled')\n"
      /* backoff: retry_at in the future keeps it out of runnable() until then */
      "local bo = db:process_upsert{name = 'bo', max_retries = 1, retry_backoff_ms = 60000}\n"
      "local br = db:dispatch('bo'); local bp = db:run_finish(br.id, {status = 'failed'})\n"
      "check(bp.status == 'runnable' and bp.retry_at ~= nil and bp.retry_at > br.created_at, tostring(bp.retry_at))\n"
      "local function in_runnable(name) for _, x in ipairs(db:runnable(100)) do if x.name == name then return true end end return false end\n"
      "check(not in_runnable('bo'))\n"
      "db:process_set_status('bo', 'runnable'); check(in_runnable('bo') and db:process_get('bo').retry_at == nil)\n"
      /* daemon failure follows the backlog like success */
      "local d = daemon('d'); db:channel_create('in'); db:handler_add('d', 'in')\n"
      "db:send('in', {}) db:send('in', {})\n"
      "local dr = db:dispatch('d'); check(db:run_finish(dr.id, {status = 'failed'}).status == 'runnable')\n"
      "dr = db:dispatch('d'); check(db:run_finish(dr.id, {status = 'failed'}).status == 'waiting')\n"
      /* out-of-band disable or suspend wins */
      "db:send('in', {}) dr = db:dispatch('d')\n"
      "db:process_disable('d'); db:send('in', {})\n"
      "check(db:run_finish(dr.id).status == 'disabled')\n"
      "local s2 = daemon('s2'); db:process_set_status('s2', 'runnable'); local sr = db:dispatch('s2')\n"
      "db:process_set_status('s2', 'suspended'); check(db:run_finish(sr.id).status == 'suspended')\n"
      /* a run suspended on a wait leaves the process waiting */
      "local wt = db:process_upsert{name = 'wt'}; local wr = db:dispatch('wt')\n"
      "check(db:run_finish(wr.id, {status = 'suspended'}).status == 'waiting')\n"
      /* errors */
      "check(fails(\"unknown run 'nope'\", db:run_finish('nope')))\n"
      "local e = db:process_upsert{name = 'e'}; local er = db:dispatch('e')\n"
      "check(fails(\"invalid run status 'great'\", db:run_finish(er.id, {status = 'great'})))\n"
      "check(raises(\"unknown field 'tokens'\", db.run_finish, db, er.id, {tokens = 1}))\n"
      "check(raises(\"bad field 'tokens_in'\", db.run_finish, db, er.id, {tokens_in = 'many'}))\n"
      "check(fails('result: cannot encode a function at $.f', db:run_finish(er.id, {result = {f = print}})))\n"
      "check(db:run_get(er.id).status == 'running')\n"
      /* error text is capped at 4000 bytes on a character boundary */
      "check(db:run_finish(er.id, {status = 'failed', error = 'x' .. string.rep('\\u{e9}', 3000)}))\n"
      "local stored = db:run_get(er.id).error; check(#stored <= 4000 and #stored >= 3999 and utf8.len(stored) ~= nil)\n");
  done(L);
}

TEST(test_recover) {
  lua_State *L = new_state();
  run(L,
      "db:channel_create('in')\n"
      "local a, b, c = daemon('a'), daemon('b'), daemon('c')\n"
      "for _, p in ipairs{a, b, c} do db:handler_add(p.id, 'in') end\n"
      "local m = db:send('in', {n = 1})\n"
      "local ra, rb, rc = db:dispatch('a', 'n1'), db:dispatch('b', 'n1'), db:dispatch('c', 'n2')\n"
      "local dis = db:process_upsert{name = 'dis'}; local rd = db:dispatch('dis', 'n1'); db:process_disable('dis')\n"
      "wakes()\n"
      "check(db:recover('n1') == 3)\n"
      "for _, r in ipairs{ra, rb, rd} do\n"
      "  local g = db:run_get(r.id); check(g.status == 'failed' and g.error == 'node stopped during the run' and g.completed_at)\n"
      "end\n"
      "check(db:run_get(rc.id).status == 'running' and db:process_get('c').status == 'running')\n"
      "check(db:process_get('a').status == 'runnable' and db:process_get('b').status == 'runnable')\n"
      "check(db:process_get('dis').status == 'disabled')\n"
      "check(#wakes() == 2)\n"
      "check(pending(a.id) == 1 and sql(\"SELECT run FROM delivery WHERE process = '\" .. a.id .. \"'\") == nil)\n"
      "local again = db:dispatch('a', 'n3'); check(again.message == m.id and again.payload.n == 1)\n"
      "check(db:recover('n1') == 0 and db:recover('nobody') == 0)\n");
  done(L);
}

TEST(test_files) {
  lua_State *L = new_state();
  run(L,
      "local w = assert(db:file_write('notes/a', 'one'))\n"
      "check(w.created == true and w.changed == true and w.version == 1 and w.key == 'notes/a' and #w.id == 36)\n"
      "local same = db:file_write('notes/a', 'one'); check(same.created == false and same.changed == false and same.version == 1)\n"
      "check(same.id == w.id)\n"
      "local v2 = db:file_write('notes/a', 'two', {source = 'agent', run_id = 'r1', read_only = true})\n"
      "check(v2.changed and not v2.created and v2.version == 2)\n"
      "local f = db:file_get('notes/a')\n"
      "check(f.content == 'two' and f.version == 2 and f.source == 'agent' and f.read_only == true and f.run_id == 'r1')\n"
      "check(f.id == w.id and f.size == 3 and json.is_array(f.includes) and #f.includes == 0)\n"
      "local h = db:file_history('notes/a')\n"
      "check(#h == 2 and h[1].version == 1 and h[1].content == 'one' and h[1].is_active == false)\n"
      "check(h[2].is_active == true and h[1].source == 'cogent' and h[1].read_only == false)\n"
      "local back = db:file_write('notes/a', 'one'); check(back.version == 3 and back.changed)\n" /* compares the active one */
      "local hist = db:file_history('notes/a'); local act = 0 for _, v in ipairs(hist) do if v.is_active then act = act + 1 end end\n"
      "check(act == 1 and hist[3].is_active and #hist == 3)\n"
      "check(tonumber(sql(\"SELECT count(*) FROM file_version v JOIN file f ON f.n = v.file WHERE f.id = '\" .. w.id .. \"'\")) == 3)\n"
      /* includes */
      "db:file_write('p', 'see @{notes/a} and @{ b } and @{notes/a} and @{p} and @{} and @{x\\ny} @{c')\n"
      "local inc = db:file_get('p').includes; check(#inc == 2 and inc[1] == 'notes/a' and inc[2] == 'b')\n"
      "db:file_write('p', 'nothing now'); check(#db:file_get('p').includes == 0)\n"
      /* listing by prefix */
      "db:file_write('notes/b', '\\u{e9}t\\u{e9}') db:file_write('notes0', 'x') db:file_write('note', 'x')\n"
      "local l = db:file_list{prefix = 'notes/'}; check(#l == 2 and l[1].key == 'notes/a' and l[2].key == 'notes/b')\n"
      "check(l[2].size == 5 and l[1].version == 3 and l[1].updated_at ~= nil)\n"
      "check(#db:file_list() == 5 and #db:file_list{limit = 2} == 2 and #db:file_list{prefix = 'zzz'} == 0)\n"
      "check(#db:file_list{prefix = 'note'} == 4)\n"
      /* delete */
      "check(db:file_delete('notes/a') == true)\n"
      "check(fails(\"unknown file 'notes/a'\", db:file_get('notes/a')))\n"
      "check(fails(\"unknown file 'notes/a'\", db:file_history('notes/a')))\n"
      "check(fails(\"unknown file 'notes/a'\", db:file_delete('notes/a')))\n"
      "check(sql('SELECT count(*) FROM file_version WHERE file NOT IN (SELECT n FROM file)') == '0')\n"
      "check(fails('file key must not be empty', db:file_write('', 'x')))\n"
      "check(raises('string expected', db.file_write, db, 'k', 5))\n"
      "local big = string.rep('x', 100000); db:file_write('big', big); check(db:file_get('big').content == big)\n"
      "check(db:file_write('big', big).changed == false)\n"
      "check(db:file_write('nul', 'a\\0b').changed and db:file_get('nul').content == 'a\\0b')\n");
  done(L);
}

TEST(test_capabilities_grants) {
  lua_State *L = new_state();
  run(L,
      "local c = assert(db:capability_upsert{name = 'files', description = 'd', schema = {read = {input = {}}}})\n"
      "check(c.name == 'files' and c.enabled == true and c.schema.read ~= nil and c.description == 'd')\n"
      "check(json.is_array(c.event_types) and not json.is_array(c.metadata))\n"
      "local c2 = db:capability_upsert{name = 'files', description = 'e'}\n"
      "check(c2.id == c.id and c2.description == 'e' and c2.schema.read ~= nil)\n"
      "db:capability_upsert{name = 'procs', enabled = false}\n"
      "local all = db:capability_list(); check(#all == 2 and all[1].name == 'files' and all[2].enabled == false)\n"
      "check(fails(\"unknown capability 'x'\", db:capability_get('x')))\n"
      "check(db:capability_get('procs').enabled == false)\n"
      "check(raises(\"unknown field 'foo'\", db.capability_upsert, db, {name = 'x', foo = 1}))\n"
      "local p = daemon('p')\n"
      "local g = assert(db:grant_add('p', {capability = 'files', name = 'notes', config = {prefix = 'notes/', ops = {'read'}}}))\n"
      "check(g.capability == 'files' and g.name == 'notes' and g.process == p.id and g.config.prefix == 'notes/')\n"
      "check(json.is_array(g.config.ops) and g.enabled == true)\n"
      "local g2 = db:grant_add(p.id, {capability = 'files', name = 'notes', config = {prefix = 'x/'}})\n"
      "check(g2.id == g.id and g2.config.prefix == 'x/' and g2.config.ops == nil)\n"
      "local g3 = db:grant_add('p', {capability = 'procs'}); check(g3.name == 'procs' and next(g3.config) == nil)\n"
      "check(json.encode(g3.config) == '{}')\n"
      "local gs = db:grants('p'); check(#gs == 2 and gs[1].name == 'notes' and gs[2].name == 'procs' and gs[2].enabled == false)\n"
      "check(fails(\"unknown capability 'nope'\", db:grant_add('p', {capability = 'nope'})))\n"
      "check(fails(\"unknown process 'q'\", db:grant_add('q', {capability = 'files'})))\n"
      "check(fails(\"unknown process 'q'\", db:grants('q')))\n"
      "check(fails('config must be a JSON object', db:grant_add('p', {capability = 'files', config = {1, 2}})))\n"
      "check(raises(\"'capability' is required\", db.grant_add, db, 'p', {}))\n"
      /* grants given with the process: one operation, all or nothing */
      "local q = assert(db:process_upsert{name = 'q', grants = {{capability = 'files', name = 'docs', config = {prefix = 'd/'}},\n"
      "  {capability = 'procs'}}})\n"
      "gs = db:grants('q'); check(#gs == 2 and gs[1].name == 'docs' and gs[1].config.prefix == 'd/' and gs[2].name == 'procs')\n"
      "check(fails(\"unknown capability 'nope'\", db:process_upsert{name = 'r', grants = {{capability = 'files'}, {capability = 'nope'}}}))\n"
      "check(fails(\"unknown process 'r'\", db:process_get('r')))\n"
      "check(sql(\"SELECT count(*) FROM process_capability\") == '4')\n"
      "check(raises(\"'capability' is required\", db.process_upsert, db, {name = 'r', grants = {{name = 'x'}}}))\n"
      "check(raises('must be a list', db.process_upsert, db, {name = 'r', grants = 'files'}))\n"
      "check(raises('must be a list', db.process_upsert, db, {name = 'r', grants = {files = {capability = 'files'}}}))\n"
      "check(raises('config must be a table', db.process_upsert, db, {name = 'r', grants = {{capability = 'files', config = 'x'}}}))\n"
      /* a re-grant through process_upsert keeps the grant's identity */
      "local before = gs[1]\n"
      "assert(db:process_upsert{name = 'q', grants = {{capability = 'files', name = 'docs', config = {prefix = 'd/e/'}}}})\n"
      "local after = db:grants('q')[1]; check(after.id == before.id and after.created_at == before.created_at and after.config.prefix == 'd/e/')\n");
  done(L);
}

/* An older database keeps its data through every later migration. */
TEST(test_migrations_keep_data) {
  lua_State *L = new_state();
  char dbpath_old[300];
  snprintf(dbpath_old, sizeof dbpath_old, "%s-old", dbpath);
  run(L,
      "local path = DBPATH .. '-old'\n"
      "local old = assert(store.open(path))\n"
      "check(old:migrate(2) == 2 and old:meta_get('schema_version') == '2')\n"
      "check(fails('store: no schema version 9 (1 to 4)', old:migrate(9)))\n"
      /* version 2: grants keyed by id, versions keyed by (file id, version) */
      "old:capability_upsert{name = 'files'}\n"
      "local p = assert(old:process_upsert{name = 'p', mode = 'daemon'})\n"
      "local g = assert(old:grant_add('p', {capability = 'files', name = 'notes', config = {prefix = 'n/'}}))\n"
      "sql([[INSERT INTO file (id, key, version, created_at, updated_at) VALUES\n"
      "  ('f1', 'a', 2, '2026-01-01', '2026-01-02'), ('f2', 'b', 1, '2026-01-03', '2026-01-03');\n"
      "  INSERT INTO file_version (id, file_id, version, content, size, created_at) VALUES\n"
      "  ('v1', 'f1', 1, 'one', 3, '2026-01-01'), ('v2', 'f1', 2, 'two', 3, '2026-01-02'),\n"
      "  ('v3', 'f1', 3, 'three', 5, '2026-01-02'), ('v4', 'f2', 1, 'bee', 3, '2026-01-03');]], path)\n"
      "check(old:migrate() == 4 and old:meta_get('schema_version') == '4')\n"
      "local gs = old:grants('p'); check(#gs == 1 and gs[1].id == g.id and gs[1].config.prefix == 'n/')\n"
      "check(gs[1].created_at == g.created_at and gs[1].capability == 'files')\n"
      "check(sql(\"SELECT count(*) FROM sqlite_master WHERE name = 'process_capability_capability'\", path) == '0')\n"
      "check(old:grant_add('p', {capability = 'files', name = 'notes', config = {}}).id == g.id)\n"
      "local a = old:file_get('a'); check(a.id == 'f1' and a.version == 2 and a.content == 'two')\n"
      "local h = old:file_history('a'); check(#h == 3 and h[3].content == 'three' and h[2].is_active and h[1].id == 'v1')\n"
      "check(old:file_get('b').content == 'bee')\n"
      "local w = assert(old:file_write('a', 'four')); check(w.version == 4 and w.changed)\n"
      "local c = assert(old:file_write('c', 'sea')); check(c.created and old:file_get('c').content == 'sea')\n"
      "check(sql(\"SELECT n FROM file WHERE key = 'c'\", path) == '3')\n"
      "check(old:file_delete('a') and sql('SELECT count(*) FROM file_version', path) == '2')\n"
      "old:close()\n");
  unit_db_remove(dbpath_old);
  done(L);
}

TEST(test_channels_handlers) {
  lua_State *L = new_state();
  run(L,
      "local p = daemon('p')\n"
      "local c, created = db:channel_create('x', {owner = 'p', channel_type = 'spawn', schema = {fields = {a = 'string'}}})\n"
      "check(created == true and c.owner == p.id and c.channel_type == 'spawn' and c.inline_schema.fields.a == 'string')\n"
      "check(c.auto_close == false and c.closed_at == nil)\n"
      "local c2, created2 = db:channel_create('x', {channel_type = 'named'})\n"
      "check(created2 == false and c2.id == c.id and c2.owner == p.id and c2.channel_type == 'spawn' and c2.inline_schema)\n"
      "check(fails(\"invalid channel_type 'odd'\", db:channel_create('y', {channel_type = 'odd'})))\n"
      "check(fails(\"unknown process 'ghost'\", db:channel_create('y', {owner = 'ghost'})))\n"
      "check(fails(\"unknown schema 's'\", db:channel_create('y', {schema = 's'})))\n"
      "check(fails(\"unknown channel 'y'\", db:channel_get('y')))\n"
      "check(db:channel_create('a', {inline_schema = {fields = {}}}).inline_schema.fields ~= nil)\n"
      "local names = {} for _, ch in ipairs(db:channel_list()) do names[#names + 1] = ch.name end\n"
      "check(table.concat(names, ',') == 'a,x', table.concat(names, ','))\n"
      /* handlers */
      "local h = assert(db:handler_add('p', 'x')); check(h.channel == 'x' and h.channel_id == c.id and h.enabled == true)\n"
      "check(h.process == p.id and h.pattern == nil)\n"
      "local h2 = db:handler_add(p.id, 'x'); check(h2.id == h.id)\n"
      "check(fails(\"unknown channel 'nope'\", db:handler_add('p', 'nope')))\n"
      "check(fails(\"unknown process 'q'\", db:handler_add('q', 'x')))\n"
      "check(#db:handler_list{process = 'p'} == 1 and #db:handler_list() == 1)\n"
      "check(db:handler_remove(h.id) == true)\n"
      "check(fails(\"unknown handler '\" .. h.id .. \"'\", db:handler_remove(h.id)))\n"
      "check(db:send('x', {a = 's'}).deliveries == 0)\n"
      "check(#db:handler_list{process = 'p'} == 0)\n"
      "check(fails(\"unknown process 'q'\", db:handler_list{process = 'q'}))\n"
      /* stdin wakes the process through its own handler */
      "local s = db:send('io:stdin:p', {text = 'hello'}); check(s.deliveries == 1 and s.woken[1] == p.id)\n");
  done(L);
}

TEST(test_group_commit) {
  lua_State *L = new_state();
  run(L,
      "local function count(sql_from) return tonumber(sql('SELECT count(*) FROM ' .. sql_from)) end\n"
      "wakes() group_open(db)\n"
      "local a = assert(db:process_upsert{name = 'ga'})\n" /* a one_shot: runnable, a wake-up */
      "check(count(\"process WHERE name = 'ga'\") == 0 and #wakes() == 0)\n" /* not committed yet */
      "check(fails('process name must not be empty', db:process_upsert{name = ''}))\n"
      "db:begin() db:process_upsert{name = 'gb'} db:rollback()\n" /* a nested rollback undoes its own part */
      "check(db:file_write('gk', 'v'))\n"
      "check(count(\"file WHERE key = 'gk'\") == 0)\n"
      "check(group_close(db))\n"
      "check(count(\"process WHERE name = 'ga'\") == 1 and count(\"process WHERE name = 'gb'\") == 0)\n"
      "check(count(\"file WHERE key = 'gk'\") == 1)\n"
      "local w = wakes(); check(#w == 1 and w[1] == a.id)\n" /* after the group's commit */
      /* nested groups share the outermost */
      "group_open(db) group_open(db) db:file_write('gk2', 'v') check(group_close(db))\n"
      "check(count(\"file WHERE key = 'gk2'\") == 0) check(group_close(db))\n"
      "check(count(\"file WHERE key = 'gk2'\") == 1)\n"
      /* a group with no operation holds no lock: another connection writes meanwhile */
      "group_open(db) check(pcall(sql, \"INSERT INTO meta (key, value) VALUES ('g', 'x')\")) check(group_close(db))\n"
      /* outside a group every operation commits at once */
      "db:file_write('gk3', 'v') check(count(\"file WHERE key = 'gk3'\") == 1)\n");
  done(L);
}

TEST(test_io_channels) {
  lua_State *L = new_state();
  run(L,
      /* io channels: latent until first used, then owned by the process; stdin with its handler */
      "local q = daemon('q1'); check(#db:channel_list() == 0 and #db:handler_list{process = 'q1'} == 0)\n"
      "check(#db:messages('io:stdout:q1') == 0)\n" /* a reader sees a latent channel empty */
      "check(fails(\"unknown channel 'io:stdout:nobody'\", db:messages('io:stdout:nobody')))\n"
      "check(fails(\"unknown channel 'io:stdout:nobody'\", db:send('io:stdout:nobody', {})))\n"
      "check(db:send('io:stdout:q1', {text = 'out'}).deliveries == 0)\n"
      "check(db:handler_add('q1', 'io:stderr:q1').channel == 'io:stderr:q1')\n"
      "check(db:send('io:stdin:q1', {text = 'in'}).deliveries == 1)\n"
      "for _, io in ipairs{'stdin', 'stdout', 'stderr'} do\n"
      "  local c = db:channel_get('io:' .. io .. ':q1'); check(c and c.owner == q.id and c.channel_type == 'implicit')\n"
      "end\n"
      "local hs = db:handler_list{process = 'q1'}; check(#hs == 2 and hs[1].channel:match('^io:std') and hs[2].channel:match('^io:std'))\n"
      "check(#db:messages('io:stdout:q1') == 1 and #db:messages('io:stdin:q1') == 1)\n"
      /* spawn and cog channels between a parent and its child */
      "local P = daemon('P'); local C = daemon('C', {parent_process = 'P'}); local X = daemon('X')\n"
      "local down, up = 'spawn:' .. P.id .. '\\u{2192}' .. C.id, 'spawn:' .. C.id .. '\\u{2192}' .. P.id\n"
      "check(#db:messages(down) == 0 and #db:messages(up) == 0 and db:channel_get(down) == nil)\n"
      "check(db:send(down, {n = 1}).deliveries == 1)\n" /* the child handles its parent's channel to it */
      "local c = db:channel_get(down); check(c.owner == P.id and c.channel_type == 'spawn')\n"
      "check(db:send(up, {n = 2}).deliveries == 0 and db:channel_get(up).owner == C.id)\n"
      "local bad = 'spawn:' .. P.id .. '\\u{2192}' .. X.id\n"
      "check(fails(\"unknown channel '\" .. bad .. \"'\", db:send(bad, {})))\n"
      "check(fails(\"unknown channel '\" .. bad .. \"'\", db:messages(bad)))\n"
      "check(db:send('cog:from:C', {t = 'hint'}) and db:channel_get('cog:from:C').owner == P.id)\n"
      "check(db:send('cog:to:C', {t = 'ok'}) and db:channel_get('cog:to:C').owner == C.id)\n"
      "check(fails(\"unknown channel 'cog:from:P'\", db:send('cog:from:P', {})))\n" /* P has no parent */
      /* channel_create of a latent one (a typed pair): the implicit owner and handler join it */
      "local D = daemon('D', {parent_process = 'P'}); local typed = 'spawn:' .. P.id .. '\\u{2192}' .. D.id\n"
      "local t = db:channel_create(typed, {schema = {fields = {n = 'number'}}}); check(t.owner == P.id)\n"
      "check(db:send(typed, {n = 1}).deliveries == 1 and fails(\"payload does not match the schema of '\" .. typed .. \"': n: expected number, got string\",\n"
      "  db:send(typed, {n = 'x'})))");
  done(L);
}

TEST(test_transactions) {
  lua_State *L = new_state();
  run(L,
      "db:begin() daemon('a')\n"
      "  db:begin() daemon('b') db:rollback()\n"
      "  check(db:process_get('a') ~= nil and db:process_get('b') == nil)\n"
      "  db:begin() daemon('c') db:commit()\n"
      "db:commit()\n"
      "check(db:process_get('a') and db:process_get('c') and not db:process_get('b'))\n"
      "db:begin() daemon('d') db:rollback(); check(db:process_get('d') == nil)\n"
      "check(db:channel_get('io:stdin:d') == nil)\n"
      "check(raises('commit without begin', db.commit, db))\n"
      "check(raises('rollback without begin', db.rollback, db))\n"
      /* wake callbacks wait for the outermost commit, and vanish on rollback */
      "wakes()\n"
      "db:begin() db:begin() db:process_set_status('a', 'runnable') db:commit()\n"
      "check(#wakes() == 0) db:commit() check(#wakes() == 1)\n"
      "db:process_set_status('a', 'waiting')\n"
      "db:begin() db:process_set_status('a', 'runnable') db:rollback(); check(#wakes() == 0)\n"
      "check(db:process_get('a').status == 'waiting')\n"
      "db:begin() db:begin() db:process_set_status('a', 'runnable') db:rollback() db:commit(); check(#wakes() == 0)\n"
      /* a rule that fails inside a transaction undoes only itself */
      "db:begin() daemon('e') check(db:process_upsert{name = 'f', parent_process = 'ghost'} == nil) db:commit()\n"
      "check(db:process_get('e') and not db:process_get('f'))\n"
      /* a Lua error mid-transaction: the caller rolls back */
      "local ok = pcall(function() db:begin() daemon('g') error('boom') end)\n"
      "check(not ok) db:rollback(); check(db:process_get('g') == nil)\n"
      "for i = 1, 20 do db:begin() end daemon('deep') for i = 1, 20 do db:commit() end\n"
      "check(db:process_get('deep') ~= nil)\n");
  done(L);
}

TEST(test_epochs_wipe) {
  lua_State *L = new_state();
  run(L,
      "local old = daemon('p', {status = 'runnable'})\n"
      "db:file_write('k', 'v') db:channel_create('c') db:send('c', {}) db:send('io:stdin:p', {})\n"
      "db:meta_set('epoch', '1')\n"
      "check(fails(\"unknown process 'p'\", db:process_get('p')))\n"
      "check(db:process_get(old.id).epoch == 0)\n" /* by id: any epoch */
      "check(#db:runnable(10) == 0)\n"
      "local new = daemon('p', {status = 'runnable'}); check(new.id ~= old.id and new.epoch == 1)\n"
      "check(db:process_get('p').id == new.id and #db:runnable(10) == 1)\n"
      "check(#db:process_list() == 1 and #db:process_list{all_epochs = true} == 2)\n"
      "check(#db:process_list{all_epochs = true, status = 'runnable'} == 2)\n"
      "check(#db:handler_list() == 1)\n"
      "check(db:wipe() == true)\n"
      "check(db:meta_get('epoch') == '0' and db:meta_get('schema_version') == '4')\n"
      "check(#db:process_list{all_epochs = true} == 0 and #db:channel_list() == 0 and #db:file_list() == 0)\n"
      "check(sql('SELECT count(*) FROM channel_message') == '0' and sql('SELECT count(*) FROM delivery') == '0')\n"
      "check(daemon('p').epoch == 0)\n"
      /* an epoch change that is rolled back leaves no trace, even if read meanwhile */
      "db:begin() db:meta_set('epoch', '7') check(daemon('q').epoch == 7) db:rollback()\n"
      "check(daemon('q').epoch == 0 and db:meta_get('epoch') == '0')\n");
  done(L);
}

TEST(test_runnable) {
  lua_State *L = new_state();
  run(L,
      "daemon('low', {status = 'runnable', priority = 1.0})\n"
      "daemon('high', {status = 'runnable', priority = 5.0})\n"
      "daemon('b', {status = 'runnable', priority = 3.0}) sleep_ms(3) daemon('a', {status = 'runnable', priority = 3.0})\n"
      "daemon('idle')\n"
      "local r = db:runnable(10)\n"
      "check(#r == 4 and r[1].name == 'high' and r[4].name == 'low')\n"
      "check(r[2].name == 'b' and r[3].name == 'a')\n" /* same priority: runnable longer first */
      "check(count(r[1]) == 4 and r[1].id and r[1].runnable_since and r[1].priority == 5.0)\n"
      "check(#db:runnable(2) == 2 and #db:runnable() == 4)\n");
  done(L);
}

TEST(test_misuse) {
  lua_State *L = new_state();
  run(L, "check(raises('string expected', db.process_get, db))\n"
         "check(raises('string expected', db.send, db, nil, {}))\n"
         "check(raises('table expected', db.messages, db, 'c', 5))\n"
         "check(raises('cogos.store expected', db.process_get, {}, 'x'))\n"
         "check(raises('string expected', db.recover, db))\n"
         "check(raises('table expected', db.grant_add, db, 'p', 'files'))\n"
         "check(raises(\"bad field 'limit'\", db.messages, db, 'c', {limit = 'ten'}))\n"
         "db:close() db:close()\n"
         "check(raises('closed', db.process_get, db, 'x'))\n");
  done(L);
}

/* The store used from C: store_check and the wake callback with a userdata. */
TEST(test_c_api) {
  lua_State *L = new_state();
  lua_getglobal(L, "db");
  store_t *s = store_check(L, -1);
  CHECK(s != NULL);
  lua_pop(L, 1);
  lua_pushcfunction(L, store_luaopen);
  CHECK(lua_pcall(L, 0, 1, 0) == LUA_OK && lua_istable(L, -1));
  lua_pop(L, 1);
  done(L);
}

/* {============ Lua errors inside a rule (out of memory at every step) */

static size_t mem_used, mem_limit = (size_t)-1;

static void *limited_alloc (void *ud, void *ptr, size_t osize, size_t nsize) {
  (void)ud;
  if (ptr == NULL) osize = 0;
  if (nsize == 0) {
    free(ptr);
    mem_used -= osize;
    return NULL;
  }
  if (nsize > osize && mem_used + (nsize - osize) > mem_limit) return NULL;
  void *p = realloc(ptr, nsize);
  if (p) mem_used = mem_used + nsize - osize;
  return p;
}

/* setlimit(n): allow n more bytes; setlimit() lifts the cap. */
static int l_setlimit (lua_State *L) {
  mem_limit = lua_isnoneornil(L, 1) ? (size_t)-1 : mem_used + (size_t)luaL_checkinteger(L, 1);
  return 0;
}

TEST(test_lua_errors_inside_rules) {
  lua_State *L = lua_newstate(limited_alloc, NULL);
  unit_db_openlibs(L);
  lua_register(L, "setlimit", l_setlimit);
  run(L, prelude);
  run(L,
      "db:channel_create('in') daemon('d') db:handler_add('d', 'in')\n"
      "collectgarbage() collectgarbage('stop')\n"
      "local oom, ok = 0, 0\n"
      "for i = 1, 400 do\n"
      "  local name = 'x' .. i\n"
      "  local t = {name = name, mode = 'daemon', metadata = {a = {1, 2, 3}}}\n"
      "  setlimit(i * 24)\n"
      "  local done, res = pcall(db.process_upsert, db, t)\n"
      "  setlimit()\n"
      "  if done then ok = ok + 1 else oom = oom + 1 end\n"
      "  local p = db:process_get(name)\n"
      "  if done then check(p ~= nil, name) end\n"
      /* a first use of stdin makes the channel and the handler with the message, or nothing */
      "  if p then\n"
      "    setlimit(i * 24)\n"
      "    pcall(db.send, db, 'io:stdin:' .. name, {i = i})\n"
      "    setlimit()\n"
      "    local where = \" WHERE c.name = 'io:stdin:\" .. name .. \"'\"\n"
      "    local chans = tonumber(sql(\"SELECT count(*) FROM channel c\" .. where))\n"
      "    local hs = tonumber(sql(\"SELECT count(*) FROM handler h JOIN channel c ON c.id = h.channel\" .. where))\n"
      "    local ms = tonumber(sql(\"SELECT count(*) FROM channel_message m JOIN channel c ON c.id = m.channel\" .. where))\n"
      "    check((chans == 1 and hs == 1 and ms == 1) or (chans == 0 and hs == 0 and ms == 0), name)\n"
      "  end\n"
      "end\n"
      "check(oom > 0 and ok > 0, oom .. ' failed, ' .. ok .. ' done')\n"
      /* the same for send: a message exists with all its deliveries, or not at all */
      "for i = 1, 200 do\n"
      "  setlimit(i * 24)\n"
      "  pcall(db.send, db, 'in', {i = i, pad = string.rep('x', 10)})\n"
      "  setlimit()\n"
      "end\n"
      "local msgs = tonumber(sql(\"SELECT count(*) FROM channel_message\"))\n"
      "local dels = tonumber(sql(\"SELECT count(*) FROM delivery\"))\n"
      "check(msgs == dels and msgs > 0, msgs .. ' messages, ' .. dels .. ' deliveries')\n"
      "collectgarbage('restart')\n"
      /* nothing is left open: another connection can write, and so can we */
      "check(pcall(sql, \"INSERT INTO meta (key, value) VALUES ('other', 'writer')\"))\n"
      "check(db:begin() and db:commit())\n"
      "check(db:file_write('k', 'v').created)\n");
  lua_close(L);
  unit_db_remove(dbpath);
}

TEST(test_lifecycle) {
  lua_State *L = new_state();
  run(L,
      "db:channel_create('in')\n"
      "local d = daemon('d'); db:handler_add('d', 'in')\n"
      "local function fail_run(name, status) local r = assert(db:dispatch(name)); return db:run_finish(r.id, {status = status or 'failed'}) end\n"
      "local function alerts() return tonumber(sql(\"SELECT count(*) FROM alert WHERE alert_type = 'process:daemon_suspended' AND severity = 'critical'\")) end\n"
      /* two failures, then a success: the breaker counts consecutive failures only */
      "for i = 1, 6 do db:send('in', {i = i}) end\n"
      "check(fail_run('d').status == 'runnable' and fail_run('d').status == 'runnable')\n"
      "check(fail_run('d', 'completed').status == 'runnable' and alerts() == 0)\n"
      "check(fail_run('d').status == 'runnable' and fail_run('d', 'timeout').status == 'runnable')\n"
      /* the third failure in a row (timeouts count): suspended, one critical alert */
      "local p = fail_run('d'); check(p.status == 'suspended' and alerts() == 1, p.status)\n"
      "check(sql(\"SELECT source FROM alert\") == 'd' and pending(d.id) == 0)\n"
      "db:send('in', {}); check(db:process_get('d').status == 'suspended' and alerts() == 1)\n"
      /* throttled runs count for the breaker like failures (§2.5) */
      "local t = daemon('t'); db:handler_add('t', 'in'); for i = 1, 3 do db:send('in', {}) end\n"
      "check(fail_run('t', 'throttled').status == 'runnable' and fail_run('t', 'failed').status == 'runnable')\n"
      "check(fail_run('t', 'throttled').status == 'suspended' and alerts() == 2)\n"
      /* T20: a re-upsert revives a suspended daemon */
      "check(db:process_upsert{name = 'd', status = 'waiting'}.status == 'waiting')\n"
      /* one_shot: completed (not disabled); throttled failure counts against retries */
      "local o = db:process_upsert{name = 'o'}; check(o.status == 'runnable')\n"
      "check(fail_run('o', 'completed').status == 'completed')\n"
      "local o2 = db:process_upsert{name = 'o2', max_retries = 1}\n"
      "check(fail_run('o2', 'throttled').status == 'runnable' and fail_run('o2', 'throttled').status == 'disabled')\n"
      /* backoff doubles: 1000 ms, then 2000 ms */
      "local b = db:process_upsert{name = 'b', max_retries = 3, retry_backoff_ms = 1000}\n"
      "local function gap(p2, r) local function ms(ts) local h, m, s2 = ts:match('T(%d+):(%d+):([%d.]+)Z') return ((h * 60 + m) * 60 + s2) * 1000 end return ms(p2.retry_at) - ms(r.completed_at) end\n"
      "local r1 = db:dispatch('b'); local p1 = db:run_finish(r1.id, {status = 'failed'})\n"
      "local g1 = gap(p1, db:run_get(r1.id)); check(g1 >= 999 and g1 <= 1001, g1)\n"
      "db:process_set_status('b', 'runnable')\n" /* skip the wait */
      "sql(\"UPDATE process SET retry_count = 1 WHERE name = 'b'\")\n"
      "local r2 = db:dispatch('b'); local p2 = db:run_finish(r2.id, {status = 'failed'})\n"
      "local g2 = gap(p2, db:run_get(r2.id)); check(p2.retry_count == 2 and g2 >= 1999 and g2 <= 2001, g2)\n"
      /* reparenting: parent_process changes, detach to init */
      "local init = daemon('init'); local par = daemon('par'); local kid = db:process_upsert{name = 'kid', mode = 'daemon', parent_process = 'par'}\n"
      "check(kid.parent_process == par.id)\n"
      "check(db:process_upsert{name = 'kid', parent_process = 'init'}.parent_process == init.id)\n"
      "db:process_disable('par'); check(db:process_get('kid').status == 'waiting')\n");
  done(L);
}

TEST(test_child_exited) {
  lua_State *L = new_state();
  run(L,
      "local P = daemon('P')\n"
      "local function chan(c) return 'spawn:' .. c .. '\\u{2192}' .. P.id end\n"
      "local function exits(c) local ch = db:channel_get(chan(c)); if not ch then return {} end return db:messages(chan(c)) end\n"
      /* one_shot success: exit 0, once, on a spawn channel owned by the child */
      "local A = db:process_upsert{name = 'A', parent_process = 'P'}\n"
      "local ra = db:dispatch('A'); db:run_finish(ra.id, {status = 'completed', duration_ms = 12})\n"
      "local m = exits(A.id); check(#m == 1)\n"
      "local e = m[1].payload; check(e.type == 'child:exited' and e.exit_code == 0 and e.process_id == A.id and e.process_name == 'A')\n"
      "check(e.run_id == ra.id and e.duration_ms == 12 and m[1].sender_process == A.id)\n"
      "local ch = db:channel_get(chan(A.id)); check(ch.owner == A.id and ch.channel_type == 'spawn')\n"
      /* disabling a completed child does not post again */
      "db:process_disable('A'); check(#exits(A.id) == 1)\n"
      /* failure with retries left: nothing; exhausted: exit 1 with the error capped */
      "local B = db:process_upsert{name = 'B', parent_process = P.id, max_retries = 1}\n"
      "local rb = db:dispatch('B'); db:run_finish(rb.id, {status = 'failed', error = 'no'}); check(#exits(B.id) == 0)\n"
      "rb = db:dispatch('B'); db:run_finish(rb.id, {status = 'failed', error = string.rep('e', 3000)})\n"
      "local eb = exits(B.id)[1].payload; check(#exits(B.id) == 1 and eb.exit_code == 1 and #eb.error == 1000 and eb.run_id == rb.id)\n"
      /* throttled for good: exit 3 */
      "local T = db:process_upsert{name = 'T', parent_process = P.id}; local rt = db:dispatch('T')\n"
      "db:run_finish(rt.id, {status = 'throttled'}); check(exits(T.id)[1].payload.exit_code == 3)\n"
      /* a daemon child: runs end without a word; a kill says exit 2 */
      "local D = daemon('D', {parent_process = 'P'}); db:channel_create('w'); db:handler_add('D', 'w'); db:send('w', {})\n"
      "local rd = db:dispatch('D'); db:run_finish(rd.id); check(#exits(D.id) == 0)\n"
      "db:process_disable('D'); local ed = exits(D.id); check(#ed == 1 and ed[1].payload.exit_code == 2 and ed[1].payload.run_id == rd.id)\n"
      "db:process_disable('D'); check(#exits(D.id) == 1)\n"
      /* the cascade tells every parent: the grandchild's parent hears it too */
      "local E = daemon('E', {parent_process = 'P'}); local G = daemon('G', {parent_process = 'E'})\n"
      "db:process_disable('P')\n"
      "check(#exits(E.id) == 1 and exits(E.id)[1].payload.exit_code == 2)\n"
      "check(#db:messages('spawn:' .. G.id .. '\\u{2192}' .. E.id) == 1)\n"
      /* no parent, no message */
      "local N = db:process_upsert{name = 'N'}; local rn = db:dispatch('N'); db:run_finish(rn.id)\n"
      "check(sql(\"SELECT count(*) FROM channel WHERE name LIKE 'spawn:\" .. N.id .. \"%'\") == '0')\n"
      /* an out-of-band disable during the run: exit 2 at the disable, nothing at the end */
      "local Q = daemon('Q2'); local K = db:process_upsert{name = 'K', parent_process = 'Q2'}; local rk = db:dispatch('K')\n"
      "db:process_disable('K'); db:run_finish(rk.id)\n"
      "local ek = db:messages('spawn:' .. K.id .. '\\u{2192}' .. Q.id); check(#ek == 1 and ek[1].payload.exit_code == 2)\n");
  done(L);
}

TEST(test_waits) {
  lua_State *L = new_state();
  run(L,
      "local P = daemon('P')\n"
      "local A = db:process_upsert{name = 'A', parent_process = 'P'}\n"
      "local B = db:process_upsert{name = 'B', parent_process = 'P'}\n"
      "local function finish(name) local r = db:dispatch(name); return db:run_finish(r.id, {status = 'completed'}) end\n"
      /* wait_all, process-linked: waiting until both have exited */
      "local w = assert(db:wait_add{process = 'P', type = 'wait_all', pending = {A.id, B.id}})\n"
      "check(w.status == 'pending' and w.type == 'wait_all' and #w.pending == 2 and w.run == nil and w.process == P.id)\n"
      "check(db:wait_get('P').id == w.id)\n"
      /* the waiter listens on each child's exit channel */
      "check(#db:handler_list{process = 'P'} == 2)\n"
      "wakes()\n"
      "finish('A'); check(db:process_get('P').status == 'waiting' and #wakes() == 0)\n"
      /* the exit the wait accounted for is consumed: it will not wake P again */
      "local function pending(pid) return sql(\"SELECT count(*) FROM delivery WHERE status = 'pending' AND process = '\" .. pid .. \"'\") end\n"
      "check(pending(P.id) == '0')\n"
      "check(json.encode(db:wait_get('P').pending) == '[\"' .. B.id .. '\"]')\n"
      /* other messages accumulate without waking a waiting process */
      "local s = db:send('io:stdin:P', {text = 'hi'}); check(s.deliveries == 1 and #s.woken == 0 and db:process_get('P').status == 'waiting')\n"
      "finish('B'); check(db:process_get('P').status == 'runnable' and #wakes() == 1 and db:wait_get('P') == nil)\n"
      /* the resolving exit stays pending (it triggers the resuming run), beside the stdin message */
      "check(pending(P.id) == '2')\n"
      "local res = db:wait_results('P'); check(res.children[A.id].exit_code == 0 and res.children[B.id].process_name == 'B')\n"
      "check(count(res.children) == 2)\n"
      /* wait_any, run-linked, while the lua run is parked: the process stays running, the wake callback fires */
      "local pr = db:dispatch('P')\n"
      "local C1 = db:process_upsert{name = 'C1', parent_process = 'P'}; local C2 = db:process_upsert{name = 'C2', parent_process = 'P'}\n"
      "local w2 = assert(db:wait_add{run = pr.id, type = 'wait_any', pending = {C1.id, C2.id}}); check(w2.run == pr.id and w2.process == P.id)\n"
      "wakes()\n"
      "finish('C2'); local wk = wakes(); check(#wk == 1 and wk[1] == P.id and db:process_get('P').status == 'running')\n"
      /* the parked run consumed C2's exit */
      "check(sql(\"SELECT d.run FROM delivery d JOIN channel_message m ON m.id = d.message WHERE d.process = '\" .. P.id .. \"' AND m.sender_process = '\" .. C2.id .. \"'\") == pr.id)\n"
      "check(db:wait_get('P') == nil and sql(\"SELECT status FROM wait_condition WHERE id = '\" .. w2.id .. \"'\") == 'resolved')\n"
      /* a child that already exited resolves at once */
      "local w3 = db:wait_add{process = 'P', type = 'wait', pending = {C2.id}}; check(w3.status == 'resolved' and #w3.pending == 0)\n"
      "local w4 = db:wait_add{process = 'P', type = 'wait_all', pending = {C2.id, C1.id}}; check(w4.status == 'pending' and #w4.pending == 1)\n"
      /* llm style: the run ends suspended, the process waits, the exit makes it runnable */
      "db:run_finish(pr.id, {status = 'suspended'}); check(db:process_get('P').status == 'waiting')\n"
      "finish('C1'); check(db:process_get('P').status == 'runnable')\n"
      /* non-exit messages from a child do not resolve (hot path) */
      "db:process_set_status('P', 'waiting')\n"
      "local C3 = daemon('C3', {parent_process = 'P'}); db:wait_add{process = 'P', pending = {C3.id}}\n"
      "db:send('spawn:' .. C3.id .. '\\u{2192}' .. P.id, {type = 'data'}, {sender_process = C3.id})\n"
      "check(db:process_get('P').status == 'waiting' and db:wait_get('P') ~= nil)\n"
      /* one message through two handlers (exact and pattern) counts once */
      "local W = daemon('W'); local C4 = db:process_upsert{name = 'C4', parent_process = 'W'}; local C5 = db:process_upsert{name = 'C5', parent_process = 'W'}\n"
      "db:wait_add{process = 'W', pending = {C4.id}}; db:wait_add{process = 'W', pending = {C5.id}}; db:handler_add('W', 'spawn:*')\n"
      "finish('C4')\n"
      "check(sql(\"SELECT count(*) FROM wait_condition WHERE status = 'resolved' AND process = '\" .. W.id .. \"'\") == '1')\n"
      "check(db:process_get('W').status == 'waiting')\n"
      /* an exit that arrives while the waiter is runnable still counts */
      "local V = daemon('V'); local C6 = db:process_upsert{name = 'C6', parent_process = 'V'}\n"
      "db:wait_add{process = 'V', type = 'wait_all', pending = {C6.id}}; db:process_set_status('V', 'runnable')\n"
      "finish('C6'); check(db:wait_get('V') == nil and db:process_get('V').status == 'runnable')\n"
      /* a kill resolves the killed process's waits (orphan cleanup) */
      "db:process_disable('P'); check(db:wait_get(P.id) == nil)\n"
      /* errors */
      "check(fails(\"invalid wait type 'x' (wait, wait_any or wait_all)\", db:wait_add{process = 'A', type = 'x', pending = {'a'}}))\n"
      "check(fails('wait_add: pending must name at least one process', db:wait_add{process = 'A', pending = {}}))\n"
      "check(fails(\"unknown process 'ghost'\", db:wait_add{process = 'ghost', pending = {'a'}}))\n"
      "check(fails(\"unknown run 'r'\", db:wait_add{run = 'r', pending = {'a'}}))\n"
      "check(fails(\"unknown process 'C1'\", db:wait_add{process = 'A', pending = {'C1'}}))\n"
      "local orphan = db:process_upsert{name = 'orphan'}\n"
      "check(fails(\"process '\" .. orphan.id .. \"' has no parent: it posts no child:exited\", db:wait_add{process = 'A', pending = {orphan.id}}))\n"
      /* a collector waits for its siblings: it listens on their exit channels to the parent */
      "local M = daemon('M'); local S1 = db:process_upsert{name = 'S1', parent_process = 'M'}\n"
      "local col = db:process_upsert{name = 'col', parent_process = 'M', status = 'waiting'}\n"
      "db:wait_add{process = 'col', type = 'wait_all', pending = {S1.id}}\n"
      "check(db:channel_get('spawn:' .. S1.id .. '\\u{2192}' .. col.id) == nil)\n"
      "finish('S1'); check(db:process_get('col').status == 'runnable' and db:wait_get('col') == nil)\n"
      "check(raises(\"field 'pending'\", db.wait_add, db, {process = 'A'}))\n"
      "check(fails(\"unknown process 'ghost'\", db:wait_results('ghost')))\n");
  done(L);
}

TEST(test_handler_rules) {
  lua_State *L = new_state();
  run(L,
      "local d = daemon('d'); db:channel_create('old')\n"
      "db:send('old', {n = 1})\n"
      /* a handler gets only what is sent after it exists: no replay, not even by reconcile */
      "local h = db:handler_add('d', 'old'); check(pending(d.id) == 0)\n"
      "check(db:reconcile().deliveries == 0 and pending(d.id) == 0)\n"
      "db:send('old', {n = 2}); check(pending(d.id) == 1)\n"
      /* glob patterns: matched against the channel name at each send, channel need not exist */
      "local g = daemon('g'); local hp = assert(db:handler_add('g', 'io:discord:*'))\n"
      "check(hp.pattern == 'io:discord:*' and hp.channel == 'io:discord:*' and hp.channel_id == nil)\n"
      "check(db:handler_add('g', 'io:discord:*').id == hp.id)\n"
      "db:channel_create('io:discord:dm') db:channel_create('io:email:in')\n"
      "wakes()\n"
      "local r = db:send('io:discord:dm', {x = 1}); check(r.deliveries == 1 and r.woken[1] == g.id and #wakes() == 1)\n"
      "check(db:send('io:email:in', {}).deliveries == 0)\n"
      "db:handler_add('g', 'io:?mail:*'); check(db:send('io:email:in', {}).deliveries == 1)\n"
      "check(db:send('io:discord:dm', {}).deliveries == 1)\n"
      /* a removed pattern handler stops matching */
      "db:handler_remove(hp.id); check(db:send('io:discord:dm', {}).deliveries == 0)\n"
      /* predicates: only matching messages are delivered and wake */
      "local p = daemon('p'); db:channel_create('jobs')\n"
      "local hq = assert(db:handler_add('p', 'jobs', {predicate = 'payload.priority > 3'})); check(hq.predicate == 'payload.priority > 3')\n"
      "r = db:send('jobs', {priority = 1}); check(r.deliveries == 0 and #r.woken == 0 and db:process_get('p').status == 'waiting')\n"
      "r = db:send('jobs', {priority = 5}); check(r.deliveries == 1 and r.woken[1] == p.id)\n"
      "check(pending(p.id) == 1 and sql(\"SELECT count(*) FROM delivery WHERE status = 'skipped'\") == '1')\n"
      /* a predicate error is no match, recorded on the handler */
      "r = db:send('jobs', {}); check(r.deliveries == 0)\n"
      "local listed = db:handler_list{process = 'p'}; local le\n"
      "for _, x in ipairs(listed) do if x.id == hq.id then le = x.last_error end end\n"
      "check(type(le) == 'string' and #le > 0, tostring(le))\n"
      /* patterns with predicates */
      "local z = daemon('z'); db:handler_add('z', 'jobs*', {predicate = 'payload.priority == 9'})\n"
      "check(db:send('jobs', {priority = 9}).deliveries == 2 and db:send('jobs', {priority = 8}).deliveries == 1)\n"
      "check(fails(\"unknown channel 'nope'\", db:handler_add('d', 'nope')))\n");
  done(L);
}

TEST(test_reconcile) {
  lua_State *L = new_state();
  run(L,
      "local a, b = daemon('a'), daemon('b'); db:channel_create('c')\n"
      "db:handler_add('a', 'c'); db:handler_add('b', 'c')\n"
      "for i = 1, 5 do db:send('c', {i = i}) end\n"
      "check(db:reconcile().deliveries == 0)\n"
      /* deliveries lost (as after a crash between systems): repaired, with the wake rules */
      "sql(\"DELETE FROM delivery WHERE process = '\" .. a.id .. \"'\")\n"
      "sql(\"UPDATE process SET status = 'waiting' WHERE id = '\" .. a.id .. \"'\")\n"
      "wakes()\n"
      "local r = db:reconcile(); check(r.deliveries == 5 and r.woken == 1, r.deliveries .. '/' .. r.woken)\n"
      "check(pending(a.id) == 5 and db:process_get('a').status == 'runnable' and #wakes() == 1)\n"
      "check(db:reconcile().deliveries == 0)\n"
      /* no cap: 500 missing deliveries come back at once */
      "for i = 1, 500 do db:send('c', {i = i}) end\n"
      "sql(\"DELETE FROM delivery WHERE process = '\" .. b.id .. \"'\")\n"
      "check(db:reconcile().deliveries == 505 and pending(b.id) == 505)\n"
      /* pattern and predicate handlers are repaired too */
      "local p = daemon('p'); db:handler_add('p', 'c*', {predicate = 'payload.i == 3'})\n"
      "local q = daemon('q'); db:handler_add('q', 'c?')\n"
      "db:channel_create('cx'); db:send('c', {i = 3}); db:send('cx', {i = 3})\n"
      "check(pending(p.id) == 2 and pending(q.id) == 1)\n"
      "sql(\"DELETE FROM delivery WHERE process IN ('\" .. p.id .. \"', '\" .. q.id .. \"')\")\n"
      "check(db:reconcile().deliveries == 3 and pending(p.id) == 2 and pending(q.id) == 1)\n"
      /* a child:exited repaired by reconcile resolves the wait */
      "local P = daemon('P'); local K = db:process_upsert{name = 'K', parent_process = 'P'}\n"
      "db:wait_add{process = 'P', type = 'wait', pending = {K.id}}\n"
      "local rk = db:dispatch('K'); db:run_finish(rk.id)\n"
      "check(db:process_get('P').status == 'runnable')\n"
      "sql(\"DELETE FROM delivery WHERE process = '\" .. P.id .. \"'\")\n"
      "sql(\"UPDATE wait_condition SET status = 'pending', resolved_at = NULL WHERE process = '\" .. P.id .. \"'\")\n"
      "sql(\"UPDATE process SET status = 'waiting' WHERE id = '\" .. P.id .. \"'\")\n"
      "r = db:reconcile(); check(r.deliveries == 1 and db:process_get('P').status == 'runnable' and db:wait_get('P') == nil)\n");
  done(L);
}

TEST(test_schemas) {
  lua_State *L = new_state();
  run(L,
      "local o = daemon('o'); local x = daemon('x')\n"
      "local pt = assert(db:schema_upsert('point', {x = 'number', y = 'number'}))\n"
      "check(pt.name == 'point' and pt.definition.fields.x == 'number')\n"
      "check(db:schema_upsert('point', {fields = {x = 'number', y = 'number'}}).id == pt.id)\n"
      "check(db:schema_get('point').definition.fields.y == 'number' and #db:schema_list() == 1)\n"
      "check(fails(\"unknown schema 'nope'\", db:schema_get('nope')))\n"
      "check(fails(\"unknown type 'object'\", db:schema_upsert('bad', {a = 'object'})))\n"
      "check(fails(\"unknown type 'thing'\", db:channel_create('bad', {schema = {a = 'list[thing]'}})))\n"
      "check(db:schema_upsert('tree', {name = 'string', kids = 'list[tree]'}) ~= nil)\n" /* self reference */
      "assert(db:channel_create('s', {owner = 'o', schema = {a = {b = 'number', c = 'list[point]'}, t = 'bool', l = 'list', d = 'dict', n = 'string'}}))\n"
      "local ok = {a = {b = 1.5, c = {{x = 1, y = 2}}}, t = false, l = json.array(), d = {}, n = 'n'}\n"
      "check(db:send('s', ok) ~= nil)\n"
      "local function bad(payload, msg) local r, err = db:send('s', payload); check(r == nil and err == \"payload does not match the schema of 's': \" .. msg, err) end\n"
      "local function with(k, v) local t = json.decode(json.encode(ok)); t[k] = v; return t end\n"
      "bad(with('a', {b = 'x', c = {}}), 'a.b: expected number, got string')\n"
      "bad(with('a', {b = true, c = {}}), 'a.b: expected number, got bool')\n"
      "bad(with('a', {b = 1, c = {{x = 1, y = 2}, {x = 1, y = 2}, {x = 1, y = 'z'}}}), 'a.c[2].y: expected number, got string')\n"
      "bad(with('a', {b = 1, c = {{x = 1}}}), 'a.c[0].y: missing field')\n"
      "bad(with('zz', 1), 'zz: unexpected field')\n"
      "bad(with('t', 1), 't: expected bool, got number')\n"
      "bad(with('l', {}), 'l: expected list, got dict')\n"
      "bad(with('d', {1}), 'd: expected dict, got list')\n"
      "bad(with('n', nil), 'n: missing field')\n"
      "check(#db:messages('s') == 1)\n" /* nothing written on failure */
      /* registered schema by name */
      "db:channel_create('pts', {schema = 'point'}); check(db:send('pts', {x = 1, y = 2}) ~= nil)\n"
      "local r, err = db:send('pts', {x = 1}); check(r == nil and err == \"payload does not match the schema of 'pts': y: missing field\", err)\n"
      "db:channel_create('trees', {schema = 'tree'}); check(db:send('trees', {name = 'a', kids = {{name = 'b', kids = json.array()}}}) ~= nil)\n"
      "r, err = db:send('trees', {name = 'a', kids = {{name = 2, kids = json.array()}}}); check(err and err:find('kids%[0%]%.name: expected string, got number'), err)\n"
      /* closing: owner only; a closed channel refuses sends */
      "check(fails('only the channel owner can close it', db:channel_close('s', 'x')))\n"
      "local c = assert(db:channel_close('s', 'o')); check(c.closed_at ~= nil)\n"
      "check(fails(\"channel 's' is closed\", db:send('s', ok)))\n"
      "check(db:channel_create('s', {owner = 'x'}).closed_at ~= nil and db:channel_get('s').owner == o.id)\n"
      "check(fails(\"unknown channel 'q'\", db:channel_close('q', 'o')))\n");
  done(L);
}

TEST(test_resources) {
  lua_State *L = new_state();
  run(L,
      "local gpu = assert(db:resource_upsert{name = 'gpu', resource_type = 'pool', capacity = 1})\n"
      "check(gpu.used == 0 and gpu.remaining == 1 and gpu.resource_type == 'pool')\n"
      "check(fails(\"invalid resource_type 'x' (pool or consumable)\", db:resource_upsert{name = 'z', resource_type = 'x'}))\n"
      "local a = db:process_upsert{name = 'a', resources = {'gpu'}}; local b = db:process_upsert{name = 'b', resources = {'gpu'}}\n"
      "local ra = assert(db:dispatch('a'))\n"
      "check(db:resource_list()[1].used == 1 and db:resource_list()[1].remaining == 0)\n"
      "local rb, err = db:dispatch('b'); check(rb == nil and err == \"blocked: resource 'gpu' exhausted\", err)\n"
      "check(db:process_get('b').status == 'blocked' and db:unblock() == 0)\n"
      "wakes()\n"
      "db:run_finish(ra.id); check(db:process_get('b').status == 'runnable' and #wakes() == 1)\n"
      "check(db:resource_list()[1].used == 0 and assert(db:dispatch('b')))\n"
      /* consumables: spent per run, refilled at the next period */
      "db:resource_upsert{name = 'calls', resource_type = 'consumable', capacity = 1, period_ms = 3600000}\n"
      "local c = db:process_upsert{name = 'c', mode = 'daemon', status = 'runnable', resources = {'calls'}}\n"
      "local rc = assert(db:dispatch('c')); db:run_finish(rc.id); db:process_set_status('c', 'runnable')\n"
      "local r2, e2 = db:dispatch('c'); check(r2 == nil and e2 == \"blocked: resource 'calls' exhausted\", e2)\n"
      "check(db:unblock() == 0 and db:process_get('c').status == 'blocked')\n"
      "local later = math.floor(os.time() * 1000) + 3600000\n"
      "check(db:unblock(later) == 1 and db:process_get('c').status == 'runnable')\n"
      /* an unknown resource blocks with a clear reason */
      /* a run lost with its node frees its pool */
      "local e = db:process_upsert{name = 'e', resources = {'gpu'}}; db:run_finish(db:run_list{process = 'b'}[1].id)\n"
      "assert(db:dispatch('e', 'n9')); check(db:resource_list()[2].used == 1)\n"
      "check(db:recover('n9') == 1 and db:resource_list()[2].used == 0)\n"
      "local u = db:process_upsert{name = 'u', resources = {'nope'}}\n"
      "local ru, eu = db:dispatch('u'); check(ru == nil and eu == \"blocked: unknown resource 'nope'\", eu)\n");
  done(L);
}

TEST(test_cron) {
  lua_State *L = new_state();
  run(L,
      "local T = 1795335330000\n" /* 2026-11-22 08:15:30 UTC, a Sunday */
      "local function bad(expr, msg) local r, err = db:cron_add{expression = expr, channel = 'x'}; check(r == nil and err == \"invalid cron expression '\" .. expr .. \"': \" .. msg, err) end\n"
      "bad('* * * *', '5 fields expected (minute hour day-of-month month weekday)')\n"
      "bad('60 * * * *', 'minute value out of range 0-59')\n"
      "bad('* * 0 * *', 'day of month value out of range 1-31')\n"
      "bad('5-1 * * * *', 'minute range 5-1 is backwards')\n"
      "bad('*/0 * * * *', \"bad minute field '*/0'\")\n"
      "bad('a * * * *', \"bad minute field 'a'\")\n"
      "local rule = assert(db:cron_add{expression = '15 8 * * *', channel = 'check:health', payload = {kind = 'cron'}})\n"
      "check(rule.enabled == true and rule.channel == 'check:health' and rule.payload.kind == 'cron')\n"
      "assert(db:cron_add{expression = '10-20/5 8 * * 7', channel = 'sunday'})\n"
      "assert(db:cron_add{expression = '15 8 * * 1-5', channel = 'weekday'})\n"
      "assert(db:cron_add{expression = '*/15 * 22 11 *', channel = 'off', enabled = false})\n"
      "check(#db:cron_list() == 4)\n"
      /* a subscriber to the minute tick */
      "local d = daemon('d'); db:channel_create('system:tick:minute'); db:handler_add('d', 'system:tick:minute')\n"
      "db:channel_create('check:health'); local s = daemon('s'); db:handler_add('s', 'check:health')\n"
      "local r = db:cron_fire(T); check(r.messages == 4, r.messages)\n" /* minute, hour, health, sunday */
      "check(db:process_get('d').status == 'runnable' and pending(s.id) == 1)\n"
      "check(db:messages('check:health')[1].payload.kind == 'cron' and #db:messages('sunday') == 1)\n"
      "check(db:channel_get('weekday') == nil and db:channel_get('off') == nil)\n"
      /* the same minute again (a restart): nothing */
      "check(db:cron_fire(T + 20000).messages == 0)\n"
      /* the next minute: the minute tick only */
      "check(db:cron_fire(T + 60000).messages == 1 and #db:messages('check:health') == 1)\n"
      "check(#db:messages('system:tick:hour') == 1 and #db:messages('system:tick:minute') == 2)\n"
      /* a restarted node (another connection) in the same minute fires nothing again */
      "local db2 = assert(store.open(DBPATH)); check(db2:cron_fire(T + 65000).messages == 0); db2:close()\n"
      /* enable / disable / delete */
      "local off; for _, c in ipairs(db:cron_list()) do if c.channel == 'off' then off = c end end\n"
      "check(db:cron_set_enabled(off.id, true).enabled == true)\n"
      "check(db:cron_fire(T - 30000 + 3 * 60000).messages == 1)\n"  /* 08:18: the minute tick only */
      "check(db:cron_fire(T - 30000 + 15 * 60000).messages == 2)\n" /* 08:30: the minute tick and 'off' */
      "check(fails(\"unknown cron rule 'nope'\", db:cron_set_enabled('nope', false)))\n"
      "check(db:cron_delete(rule.id) == true and fails(\"unknown cron rule '\" .. rule.id .. \"'\", db:cron_delete(rule.id)))\n");
  done(L);
}

TEST(test_reap_heartbeat) {
  lua_State *L = new_state();
  run(L,
      "local a = db:process_upsert{name = 'a', max_duration_ms = 1000}\n"
      "local b = db:process_upsert{name = 'b'}\n"
      "local ra = db:dispatch('a', 'n1'); local rb = db:dispatch('b', 'n1')\n"
      "local now = math.floor(os.time() * 1000)\n"
      "check(db:reap(now) == 0)\n"
      "check(db:reap(now + 5000) == 1)\n"
      "local g = db:run_get(ra.id); check(g.status == 'timeout' and g.error == 'run exceeded its maximum duration')\n"
      "check(db:process_get('a').status == 'disabled' and db:run_get(rb.id).status == 'running')\n"
      /* the default limit (15 min) and the heartbeat lease */
      "check(db:heartbeat('n1') == 1 and db:heartbeat('n2') == 0)\n"
      "check(db:reap(now + 16 * 60000) == 1 and db:run_get(rb.id).status == 'timeout')\n");
  done(L);
}

TEST(test_reboot_clear_config) {
  lua_State *L = new_state();
  run(L,
      "local init = daemon('init'); local k = daemon('k', {parent_process = 'init'}); local other = daemon('other')\n"
      "db:file_write('mnt/boot/a.md', 'a'); db:file_write('mnt/disk/b.md', 'b'); db:channel_create('keep'); db:send('keep', {})\n"
      "local r = assert(db:reboot()); check(r.epoch == 1 and r.prev_process_count == 3 and r.disabled == 2)\n"
      "check(db:meta_get('epoch') == '1' and db:process_get(init.id).status == 'disabled' and db:process_get(k.id).status == 'disabled')\n"
      "check(db:process_get(other.id).status == 'waiting' and #db:process_list() == 0)\n"
      "check(sql(\"SELECT type FROM operation\") == 'reboot' and sql(\"SELECT epoch FROM operation\") == '1')\n"
      "check(db:file_get('mnt/boot/a.md') ~= nil and #db:messages('keep') == 1)\n"
      /* clear_config: processes, grants, handlers, runs, messages and the image's files go */
      "daemon('n'); db:cron_add{expression = '* * * * *', channel = 'keep'}\n"
      "check(db:clear_config() == true)\n"
      "check(#db:process_list{all_epochs = true} == 0 and #db:cron_list() == 0 and #db:messages('keep') == 0)\n"
      "check(db:file_get('mnt/boot/a.md') == nil and db:file_get('mnt/disk/b.md') ~= nil and db:channel_get('keep') ~= nil)\n");
  done(L);
}

/* }============ */

int main (void) {
  if (unit_db_begin("store") < 0) return 1;
  RUN(test_open_migrate_meta);
  RUN(test_process_upsert);
  RUN(test_set_status);
  RUN(test_disable_cascade);
  RUN(test_send);
  RUN(test_messages_order);
  RUN(test_wait_resolution);
  RUN(test_dispatch);
  RUN(test_run_finish);
  RUN(test_recover);
  RUN(test_files);
  RUN(test_capabilities_grants);
  RUN(test_migrations_keep_data);
  RUN(test_channels_handlers);
  RUN(test_io_channels);
  RUN(test_group_commit);
  RUN(test_transactions);
  RUN(test_epochs_wipe);
  RUN(test_runnable);
  RUN(test_misuse);
  RUN(test_c_api);
  RUN(test_lua_errors_inside_rules);
  RUN(test_lifecycle);
  RUN(test_child_exited);
  RUN(test_waits);
  RUN(test_handler_rules);
  RUN(test_reconcile);
  RUN(test_schemas);
  RUN(test_resources);
  RUN(test_cron);
  RUN(test_reap_heartbeat);
  RUN(test_reboot_clear_config);
  unit_db_end();
  return unit_report();
}
