/* lstore.c — the Lua binding of the store: core.store.open and the db methods. */
#include "lcore.h"
#include "store_int.h"

#include <lauxlib.h>

#include <string.h>

#define STORE_MT "cogos.store"

typedef struct store_box {
  store_t *s; /* NULL once closed */
} store_box;

store_t *store_check (lua_State *L, int idx) {
  store_box *b = luaL_checkudata(L, idx, STORE_MT);
  if (b->s == NULL) luaL_error(L, "the store is closed");
  return b->s;
}

/* The db argument of a method; first repairs what a Lua error inside an
 * earlier call may have left (an open rule transaction, a live cursor). */
static store_t *db_arg (lua_State *L) {
  store_t *s = store_check(L, 1);
  store_guard(s);
  return s;
}

/* An optional options table at i: its index, or 0 when absent. */
static int opt_table (lua_State *L, int i) {
  if (lua_isnoneornil(L, i)) return 0;
  luaL_checktype(L, i, LUA_TTABLE);
  return i;
}

static int l_store_open (lua_State *L) {
  const char *path = luaL_checkstring(L, 1);
  int t = opt_table(L, 2);
  const char *sync = store_opt_string(L, t, "synchronous", "normal");
  int full;
  if (strcmp(sync, "normal") == 0)
    full = 0;
  else if (strcmp(sync, "full") == 0)
    full = 1;
  else
    return luaL_argerror(L, 2, "synchronous must be \"normal\" or \"full\"");
  store_box *b = lua_newuserdatauv(L, sizeof *b, 0);
  b->s = NULL;
  luaL_setmetatable(L, STORE_MT);
  char err[512];
  b->s = store_open(path, full, err, sizeof err);
  if (b->s == NULL) {
    lua_pushnil(L);
    lua_pushstring(L, err);
    return 2;
  }
  return 1;
}

static int l_store_close (lua_State *L) {
  store_box *b = luaL_checkudata(L, 1, STORE_MT);
  if (b->s) {
    store_close(b->s);
    b->s = NULL;
  }
  return 0;
}

static int l_store_tostring (lua_State *L) {
  store_box *b = luaL_checkudata(L, 1, STORE_MT);
  lua_pushfstring(L, "store (%s)", b->s ? b->s->drv->name : "closed");
  return 1;
}

static int l_store_migrate (lua_State *L) {
  store_t *s = db_arg(L);
  int version;
  if (store_migrate(s, (int)luaL_optinteger(L, 2, 0), &version) < 0) return store_push_fail(s, L);
  lua_pushinteger(L, version);
  return 1;
}

static int l_store_begin (lua_State *L) {
  store_t *s = db_arg(L);
  if (store_begin(s) < 0) return store_push_fail(s, L);
  lua_pushboolean(L, 1);
  return 1;
}

static int l_store_commit (lua_State *L) {
  store_t *s = db_arg(L);
  if (s->depth == 0) return luaL_error(L, "commit without begin");
  if (store_commit(s) < 0) return store_push_fail(s, L);
  lua_pushboolean(L, 1);
  return 1;
}

static int l_store_rollback (lua_State *L) {
  store_t *s = db_arg(L);
  if (s->depth == 0) return luaL_error(L, "rollback without begin");
  if (store_rollback(s) < 0) return store_push_fail(s, L);
  lua_pushboolean(L, 1);
  return 1;
}

static int l_store_wipe (lua_State *L) {
  store_t *s = db_arg(L);
  if (store_wipe(s) < 0) return store_push_fail(s, L);
  lua_pushboolean(L, 1);
  return 1;
}

static int l_store_reboot (lua_State *L) {
  store_t *s = db_arg(L);
  return store_m_reboot(s, L);
}

static int l_store_clear_config (lua_State *L) {
  store_t *s = db_arg(L);
  return store_m_clear_config(s, L);
}

static int l_store_meta_get (lua_State *L) {
  store_t *s = db_arg(L);
  return store_m_meta_get(s, L, luaL_checkstring(L, 2));
}

static int l_store_meta_set (lua_State *L) {
  store_t *s = db_arg(L);
  const char *key = luaL_checkstring(L, 2);
  return store_m_meta_set(s, L, key, luaL_optstring(L, 3, NULL));
}

/* {============ processes, capabilities, grants */

static int l_store_process_upsert (lua_State *L) {
  store_t *s = db_arg(L);
  return store_m_process_upsert(s, L, 2);
}

static int l_store_process_get (lua_State *L) {
  store_t *s = db_arg(L);
  return store_m_process_get(s, L, luaL_checkstring(L, 2));
}

static int l_store_process_list (lua_State *L) {
  store_t *s = db_arg(L);
  return store_m_process_list(s, L, opt_table(L, 2));
}

static int l_store_process_set_status (lua_State *L) {
  store_t *s = db_arg(L);
  const char *id = luaL_checkstring(L, 2);
  return store_m_process_set_status(s, L, id, luaL_checkstring(L, 3));
}

static int l_store_process_disable (lua_State *L) {
  store_t *s = db_arg(L);
  return store_m_process_disable(s, L, luaL_checkstring(L, 2));
}

static int l_store_capability_upsert (lua_State *L) {
  store_t *s = db_arg(L);
  return store_m_capability_upsert(s, L, 2);
}

static int l_store_capability_get (lua_State *L) {
  store_t *s = db_arg(L);
  return store_m_capability_get(s, L, luaL_checkstring(L, 2));
}

static int l_store_capability_list (lua_State *L) {
  store_t *s = db_arg(L);
  return store_m_capability_list(s, L);
}

static int l_store_grant_add (lua_State *L) {
  store_t *s = db_arg(L);
  const char *process = luaL_checkstring(L, 2);
  luaL_checktype(L, 3, LUA_TTABLE);
  return store_m_grant_add(s, L, process, 3);
}

static int l_store_grants (lua_State *L) {
  store_t *s = db_arg(L);
  return store_m_grants(s, L, luaL_checkstring(L, 2));
}

/* }============ */

/* {============ channels, messages, handlers */

static int l_store_channel_create (lua_State *L) {
  store_t *s = db_arg(L);
  const char *name = luaL_checkstring(L, 2);
  return store_m_channel_create(s, L, name, opt_table(L, 3));
}

static int l_store_channel_get (lua_State *L) {
  store_t *s = db_arg(L);
  return store_m_channel_get(s, L, luaL_checkstring(L, 2));
}

static int l_store_channel_list (lua_State *L) {
  store_t *s = db_arg(L);
  return store_m_channel_list(s, L);
}

static int l_store_send (lua_State *L) {
  store_t *s = db_arg(L);
  const char *channel = luaL_checkstring(L, 2);
  luaL_checkany(L, 3);
  return store_m_send(s, L, channel, 3, opt_table(L, 4));
}

static int l_store_messages (lua_State *L) {
  store_t *s = db_arg(L);
  const char *channel = luaL_checkstring(L, 2);
  return store_m_messages(s, L, channel, opt_table(L, 3));
}

static int l_store_handler_add (lua_State *L) {
  store_t *s = db_arg(L);
  const char *process = luaL_checkstring(L, 2);
  const char *channel = luaL_checkstring(L, 3);
  return store_m_handler_add(s, L, process, channel, opt_table(L, 4));
}

static int l_store_handler_remove (lua_State *L) {
  store_t *s = db_arg(L);
  return store_m_handler_remove(s, L, luaL_checkstring(L, 2));
}

static int l_store_handler_list (lua_State *L) {
  store_t *s = db_arg(L);
  return store_m_handler_list(s, L, opt_table(L, 2));
}

static int l_store_channel_close (lua_State *L) {
  store_t *s = db_arg(L);
  const char *name = luaL_checkstring(L, 2);
  return store_m_channel_close(s, L, name, luaL_checkstring(L, 3));
}

static int l_store_schema_upsert (lua_State *L) {
  store_t *s = db_arg(L);
  const char *name = luaL_checkstring(L, 2);
  luaL_checktype(L, 3, LUA_TTABLE);
  return store_m_schema_upsert(s, L, name, 3);
}

static int l_store_schema_get (lua_State *L) {
  store_t *s = db_arg(L);
  return store_m_schema_get(s, L, luaL_checkstring(L, 2));
}

static int l_store_schema_list (lua_State *L) {
  store_t *s = db_arg(L);
  return store_m_schema_list(s, L);
}

static int l_store_reconcile (lua_State *L) {
  store_t *s = db_arg(L);
  return store_m_reconcile(s, L);
}

/* }============ */

/* {============ waits, resources, cron, leases */

static int l_store_wait_add (lua_State *L) {
  store_t *s = db_arg(L);
  luaL_checktype(L, 2, LUA_TTABLE);
  return store_m_wait_add(s, L, 2);
}

static int l_store_wait_get (lua_State *L) {
  store_t *s = db_arg(L);
  return store_m_wait_get(s, L, luaL_checkstring(L, 2));
}

static int l_store_wait_results (lua_State *L) {
  store_t *s = db_arg(L);
  return store_m_wait_results(s, L, luaL_checkstring(L, 2));
}

static int l_store_resource_upsert (lua_State *L) {
  store_t *s = db_arg(L);
  luaL_checktype(L, 2, LUA_TTABLE);
  return store_m_resource_upsert(s, L, 2);
}

static int l_store_resource_list (lua_State *L) {
  store_t *s = db_arg(L);
  return store_m_resource_list(s, L);
}

/* An optional time in ms since 1970 at i (default: now). */
static int64_t opt_now_ms (lua_State *L, int i) {
  return lua_isnoneornil(L, i) ? store_now_ms() : (int64_t)luaL_checkinteger(L, i);
}

static int l_store_unblock (lua_State *L) {
  store_t *s = db_arg(L);
  return store_m_unblock(s, L, opt_now_ms(L, 2));
}

static int l_store_cron_add (lua_State *L) {
  store_t *s = db_arg(L);
  luaL_checktype(L, 2, LUA_TTABLE);
  return store_m_cron_add(s, L, 2);
}

static int l_store_cron_list (lua_State *L) {
  store_t *s = db_arg(L);
  return store_m_cron_list(s, L);
}

static int l_store_cron_set_enabled (lua_State *L) {
  store_t *s = db_arg(L);
  const char *id = luaL_checkstring(L, 2);
  luaL_checktype(L, 3, LUA_TBOOLEAN);
  return store_m_cron_set_enabled(s, L, id, lua_toboolean(L, 3));
}

static int l_store_cron_delete (lua_State *L) {
  store_t *s = db_arg(L);
  return store_m_cron_delete(s, L, luaL_checkstring(L, 2));
}

static int l_store_cron_fire (lua_State *L) {
  store_t *s = db_arg(L);
  return store_m_cron_fire(s, L, opt_now_ms(L, 2));
}

static int l_store_reap (lua_State *L) {
  store_t *s = db_arg(L);
  return store_m_reap(s, L, opt_now_ms(L, 2));
}

static int l_store_heartbeat (lua_State *L) {
  store_t *s = db_arg(L);
  return store_m_heartbeat(s, L, luaL_checkstring(L, 2));
}

/* }============ */

/* {============ scheduling and runs */

static int l_store_runnable (lua_State *L) {
  store_t *s = db_arg(L);
  return store_m_runnable(s, L, (int64_t)luaL_optinteger(L, 2, 200));
}

static int l_store_dispatch (lua_State *L) {
  store_t *s = db_arg(L);
  const char *process = luaL_checkstring(L, 2);
  return store_m_dispatch(s, L, process, luaL_optstring(L, 3, NULL));
}

static int l_store_run_finish (lua_State *L) {
  store_t *s = db_arg(L);
  const char *run = luaL_checkstring(L, 2);
  return store_m_run_finish(s, L, run, opt_table(L, 3));
}

static int l_store_recover (lua_State *L) {
  store_t *s = db_arg(L);
  return store_m_recover(s, L, luaL_checkstring(L, 2));
}

static int l_store_run_get (lua_State *L) {
  store_t *s = db_arg(L);
  return store_m_run_get(s, L, luaL_checkstring(L, 2));
}

static int l_store_run_list (lua_State *L) {
  store_t *s = db_arg(L);
  return store_m_run_list(s, L, opt_table(L, 2));
}

/* }============ */

/* {============ files */

static int l_store_file_write (lua_State *L) {
  store_t *s = db_arg(L);
  const char *key = luaL_checkstring(L, 2);
  luaL_checktype(L, 3, LUA_TSTRING);
  return store_m_file_write(s, L, key, 3, opt_table(L, 4));
}

static int l_store_file_get (lua_State *L) {
  store_t *s = db_arg(L);
  return store_m_file_get(s, L, luaL_checkstring(L, 2));
}

static int l_store_file_list (lua_State *L) {
  store_t *s = db_arg(L);
  return store_m_file_list(s, L, opt_table(L, 2));
}

static int l_store_file_history (lua_State *L) {
  store_t *s = db_arg(L);
  return store_m_file_history(s, L, luaL_checkstring(L, 2));
}

static int l_store_file_delete (lua_State *L) {
  store_t *s = db_arg(L);
  return store_m_file_delete(s, L, luaL_checkstring(L, 2));
}

/* }============ */

static const luaL_Reg store_methods[] = {
    {"close", l_store_close},
    {"migrate", l_store_migrate},
    {"begin", l_store_begin},
    {"commit", l_store_commit},
    {"rollback", l_store_rollback},
    {"wipe", l_store_wipe},
    {"reboot", l_store_reboot},
    {"clear_config", l_store_clear_config},
    {"meta_get", l_store_meta_get},
    {"meta_set", l_store_meta_set},
    {"process_upsert", l_store_process_upsert},
    {"process_get", l_store_process_get},
    {"process_list", l_store_process_list},
    {"process_set_status", l_store_process_set_status},
    {"process_disable", l_store_process_disable},
    {"capability_upsert", l_store_capability_upsert},
    {"capability_get", l_store_capability_get},
    {"capability_list", l_store_capability_list},
    {"grant_add", l_store_grant_add},
    {"grants", l_store_grants},
    {"channel_create", l_store_channel_create},
    {"channel_get", l_store_channel_get},
    {"channel_list", l_store_channel_list},
    {"send", l_store_send},
    {"messages", l_store_messages},
    {"handler_add", l_store_handler_add},
    {"handler_remove", l_store_handler_remove},
    {"handler_list", l_store_handler_list},
    {"channel_close", l_store_channel_close},
    {"schema_upsert", l_store_schema_upsert},
    {"schema_get", l_store_schema_get},
    {"schema_list", l_store_schema_list},
    {"reconcile", l_store_reconcile},
    {"wait_add", l_store_wait_add},
    {"wait_get", l_store_wait_get},
    {"wait_results", l_store_wait_results},
    {"resource_upsert", l_store_resource_upsert},
    {"resource_list", l_store_resource_list},
    {"unblock", l_store_unblock},
    {"cron_add", l_store_cron_add},
    {"cron_list", l_store_cron_list},
    {"cron_set_enabled", l_store_cron_set_enabled},
    {"cron_delete", l_store_cron_delete},
    {"cron_fire", l_store_cron_fire},
    {"reap", l_store_reap},
    {"heartbeat", l_store_heartbeat},
    {"runnable", l_store_runnable},
    {"dispatch", l_store_dispatch},
    {"run_finish", l_store_run_finish},
    {"recover", l_store_recover},
    {"run_get", l_store_run_get},
    {"run_list", l_store_run_list},
    {"file_write", l_store_file_write},
    {"file_get", l_store_file_get},
    {"file_list", l_store_file_list},
    {"file_history", l_store_file_history},
    {"file_delete", l_store_file_delete},
    {NULL, NULL},
};

static const luaL_Reg store_meta[] = {
    {"__gc", l_store_close},
    {"__close", l_store_close},
    {"__tostring", l_store_tostring},
    {NULL, NULL},
};

int store_luaopen (lua_State *L) {
  static const luaL_Reg fns[] = {
      {"open", l_store_open},
      {NULL, NULL},
  };
  if (luaL_newmetatable(L, STORE_MT)) {
    luaL_setfuncs(L, store_meta, 0);
    luaL_newlib(L, store_methods);
    luaL_setfuncs(L, store_obs_methods, 0);      /* events, alerts, budgets: store_obs.c */
    luaL_setfuncs(L, store_executor_methods, 0); /* the node registry: store_executor.c */
    lua_setfield(L, -2, "__index");
  }
  lua_pop(L, 1);
  luaL_newlib(L, fns);
  return 1;
}
