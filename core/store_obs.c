/* store_obs.c — observability rows: run events, alerts, budgets. */
#include "store_int.h"

const luaL_Reg store_obs_methods[] = {
  {NULL, NULL},
};
