/* test_store_obs.c — run events, alerts and budgets through the db's Lua API. */
#include "unit_db.h"

static const char *prelude =
    "store = require 'store'\n"
    "db = assert(store.open(DBPATH))\n"
    "assert(db:migrate())\n"
    "function new_run(name)\n"
    "  local p = assert(db:process_upsert({name = name, mode = 'one_shot', status = 'runnable'}))\n"
    "  return assert(db:dispatch(p.id, 'node')), p\n"
    "end\n";

static void run (const char *code) {
  lua_State *L = luaL_newstate();
  unit_db_openlibs(L);
  if (luaL_dostring(L, prelude) != LUA_OK || luaL_dostring(L, code) != LUA_OK) {
    unit_failed++;
    fprintf(stderr, "FAIL %s: Lua error: %s\n", unit_current, lua_tostring(L, -1));
  }
  lua_close(L);
  unit_db_remove(dbpath);
}

TEST(test_events) {
  run("local r = new_run('p')\n"
      "check(db:event_add(r.id, 'status', {status = 'started'}) == 1)\n"
      "check(db:event_add(r.id, 'token', {text = 'hi'}) == 2)\n"
      "check(db:event_add(r.id, 'done') == 3)\n"
      "local r2 = new_run('q')\n"
      "check(db:event_add(r2.id, 'status', {}) == 1, 'seq counts per run')\n"
      "local ev = db:events(r.id)\n"
      "check(#ev == 3 and ev[1].seq == 1 and ev[1].type == 'status' and ev[1].data.status == 'started')\n"
      "check(ev[2].data.text == 'hi' and ev[3].type == 'done' and next(ev[3].data) == nil)\n"
      "check(type(ev[1].created_at) == 'string')\n"
      "local after = db:events(r.id, {after = 1, limit = 1})\n"
      "check(#after == 1 and after[1].seq == 2)\n"
      "check(#db:events(r.id, {after = 3}) == 0)\n"
      "local v, err = db:event_add('nope', 'status', {})\n"
      "check(v == nil and err == \"unknown run 'nope'\", err)\n"
      "v, err = db:event_add(r.id, 'x', {f = print})\n"
      "check(v == nil and err:find('cannot encode'), err)\n"
      "check(not pcall(db.event_add, db, r.id, '', {}))\n");
}

TEST(test_alerts) {
  run("local a = assert(db:alert_add{severity = 'critical', alert_type = 'process:context_overflow',\n"
      "  source = 'executor', message = 'too long', metadata = {model = 'm', tokens = 5}})\n"
      "check(a.id and a.severity == 'critical' and a.metadata.tokens == 5 and a.resolved_at == nil)\n"
      "assert(db:alert_add{severity = 'warning', alert_type = 'process:run:failed', source = 'executor'})\n"
      "local all = db:alert_list()\n"
      "check(#all == 2 and all[1].alert_type == 'process:run:failed', 'newest first')\n"
      "check(#db:alert_list{alert_type = 'process:context_overflow'} == 1)\n"
      "check(#db:alert_list{unresolved = true, limit = 1} == 1)\n"
      "local v, err = db:alert_add{severity = 'meh', alert_type = 'x'}\n"
      "check(v == nil and err:find('severity must be'), err)\n"
      "v, err = db:alert_add{severity = 'warning'}\n"
      "check(v == nil and err == 'alert_type is required', err)\n");
}

TEST(test_budgets) {
  run("local r, p = new_run('p')\n"
      "assert(db:run_finish(r.id, {tokens_in = 100, tokens_out = 20, cost_usd = 0.5}))\n"
      "local b = assert(db:budget_set{scope = 'process:p', period = 'day', max_tokens = 1000})\n"
      "check(b.scope == 'process:' .. p.id and b.period == 'day' and b.max_tokens == 1000)\n"
      "check(b.tokens == 120 and b.cost_usd == 0.5, 'starts from the runs of the period')\n"
      "check(b.period_start:match('T00:00:00%.000Z$'))\n"
      "assert(db:budget_set{scope = 'cogent', period = 'total', max_cost_usd = 2.0})\n"
      "assert(db:budget_set{scope = 'cogent', period = 'month', max_tokens = 5})\n"
      "local w = assert(db:budget_set{scope = 'cogent', period = 'week', max_tokens = 5})\n"
      "local y, m, d = w.period_start:match('^(%d+)-(%d+)-(%d+)')\n"
      "check(os.date('!*t', os.time{year = y, month = m, day = d, hour = 12}).wday == 2, 'weeks start on Monday')\n"
      "check(#db:budget_status(p.id) == 4 and #db:budget_status() == 4)\n"
      "check(db:budget_charge(p.id, {tokens = 10, cost_usd = 0.25}) == 4)\n"
      "local by = {}\n"
      "for _, s in ipairs(db:budget_status(p.id)) do by[s.scope .. '/' .. s.period] = s end\n"
      "check(by['process:' .. p.id .. '/day'].tokens == 130)\n"
      "check(by['cogent/total'].cost_usd == 0.75 and by['cogent/total'].max_cost_usd == 2.0)\n"
      "check(by['cogent/month'].tokens == 130)\n"
      "local other = assert(db:process_upsert({name = 'other'}))\n"
      "check(db:budget_charge(other.id, {tokens = 1}) == 3, 'only the cogent budgets apply to others')\n"
      /* updating limits keeps spending */
      "local again = assert(db:budget_set{scope = 'process:' .. p.id, period = 'day', max_tokens = 7})\n"
      "check(again.max_tokens == 7 and again.tokens == 130)\n"
      /* a past period reads as zero and restarts on the next charge */
      "sql(\"UPDATE budget SET period_start = '2000-01-03T00:00:00.000Z' WHERE period = 'daily'\")\n"
      "local function daily() for _, x in ipairs(db:budget_status(p.id)) do if x.period == 'day' then return x end end end\n"
      "local day = daily()\n"
      "check(day.period == 'day' and day.tokens == 0, 'a past period reads as zero')\n"
      "db:budget_charge(p.id, {tokens = 5})\n"
      "day = daily()\n"
      "check(day.tokens == 5 and day.period_start ~= '2000-01-03T00:00:00.000Z', 'and restarts')\n"
      "local v, err = db:budget_set{scope = 'cogent', period = 'year', max_tokens = 1}\n"
      "check(v == nil and err:find('period must be day, week, month or total'), err)\n"
      "v, err = db:budget_set{scope = 'team', period = 'day', max_tokens = 1}\n"
      "check(v == nil and err:find('budget scope must be'), err)\n"
      "v, err = db:budget_set{scope = 'process:nope', period = 'day', max_tokens = 1}\n"
      "check(v == nil and err == \"unknown process 'nope'\", err)\n"
      "v, err = db:budget_set{scope = 'cogent', period = 'day'}\n"
      "check(v == nil and err:find('max_tokens and/or max_cost_usd'), err)\n"
      "v, err = db:budget_set{scope = 'cogent', period = 'day', max_tokens = -1}\n"
      "check(v == nil and err:find('negative'), err)\n");
}

int main (void) {
  if (unit_db_begin("obs") < 0) return 1;
  RUN(test_events);
  RUN(test_alerts);
  RUN(test_budgets);
  unit_db_end();
  return unit_report();
}
