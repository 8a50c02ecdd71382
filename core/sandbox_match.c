/* sandbox_match.c — string.find/match/gmatch/gsub for the sandbox, with a step budget.
 *
 * Lua's own matcher backtracks in C with no hook: string.rep("a", 5000) against
 * ("a*"):rep(30) .. "b" runs for longer than the universe. This is a matcher
 * for the same pattern language (reference manual §6.4.1), written so that
 * every step (an attempt at a pattern item, one character of an expansion or
 * a %b scan) is counted and charged to the instruction budget every
 * MATCH_CHARGE steps; the charge also checks the deadline and raises the kill
 * (sandbox_limits.c). Results and error messages are Lua 5.4's, checked
 * against the node's own library by tests/spec/escape_spec.lua.
 */
#include "sandbox_int.h"

#include <lauxlib.h>

#include <ctype.h>
#include <stddef.h>
#include <string.h>

#define MATCH_MAXCAPTURES 32   /* LUA_MAXCAPTURES */
#define MATCH_MAXDEPTH    200  /* nested items before "pattern too complex" (MAXCCALLS) */
#define MATCH_CHARGE      1024 /* steps between charges */
#define CAP_UNFINISHED    (-1)
#define CAP_POSITION      (-2)
#define ESC               '%'
#define SPECIALS          "^$*+?.([%-"

typedef struct mstate {
  const char *src, *src_end; /* the subject */
  const char *pat_end;
  lua_State *L;
  int depth;      /* items left before "pattern too complex" */
  int level;      /* captures open or closed */
  unsigned steps; /* not charged yet */
  struct {
    const char *init;
    ptrdiff_t len; /* or CAP_UNFINISHED, CAP_POSITION */
  } cap[MATCH_MAXCAPTURES];
} mstate;

static const char *do_match(mstate *ms, const char *s, const char *p);

/* One unit of work; every MATCH_CHARGE of them go to the budget (may raise the kill). */
static void step (mstate *ms) {
  if (++ms->steps >= MATCH_CHARGE) {
    sandbox_charge(ms->L, ms->steps);
    ms->steps = 0;
  }
}

static void settle (mstate *ms) { /* may raise */
  if (ms->steps) sandbox_charge(ms->L, ms->steps);
  ms->steps = 0;
}

static void ms_init (mstate *ms, lua_State *L, const char *s, size_t ls, const char *p, size_t lp) {
  ms->L = L;
  ms->src = s;
  ms->src_end = s + ls;
  ms->pat_end = p + lp;
  ms->steps = 0;
}

static void ms_reset (mstate *ms) {
  ms->level = 0;
  ms->depth = MATCH_MAXDEPTH;
}

/* {====================================================== single items */

/* Past the single-character class starting at p. */
static const char *class_end (mstate *ms, const char *p) { /* may raise */
  char c = *p++;
  if (c == ESC) {
    if (p >= ms->pat_end) luaL_error(ms->L, "malformed pattern (ends with '%%')");
    return p + 1;
  }
  if (c == '[') {
    if (*p == '^') p++;
    do { /* the first character may be ']' and belongs to the set */
      if (p >= ms->pat_end) luaL_error(ms->L, "malformed pattern (missing ']')");
      c = *p++;
      if (c == ESC && p < ms->pat_end) p++;
    } while (*p != ']');
    return p + 1;
  }
  return p;
}

static int class_match (int c, int cl) {
  int res;
  switch (tolower(cl)) {
  case 'a':
    res = isalpha(c);
    break;
  case 'c':
    res = iscntrl(c);
    break;
  case 'd':
    res = isdigit(c);
    break;
  case 'g':
    res = isgraph(c);
    break;
  case 'l':
    res = islower(c);
    break;
  case 'p':
    res = ispunct(c);
    break;
  case 's':
    res = isspace(c);
    break;
  case 'u':
    res = isupper(c);
    break;
  case 'w':
    res = isalnum(c);
    break;
  case 'x':
    res = isxdigit(c);
    break;
  case 'z':
    res = c == 0;
    break; /* deprecated, still in 5.4 */
  default:
    return cl == c;
  }
  if (isupper(cl)) res = !res;
  return res != 0;
}

/* c against the set [p..ec], ec at its ']'. */
static int set_match (int c, const char *p, const char *ec) {
  int in = 1;
  if (p[1] == '^') {
    in = 0;
    p++;
  }
  while (++p < ec) {
    if (*p == ESC) {
      p++;
      if (class_match(c, (unsigned char)*p)) return in;
    } else if (p[1] == '-' && p + 2 < ec) {
      p += 2;
      if ((unsigned char)p[-2] <= c && c <= (unsigned char)*p) return in;
    } else if ((unsigned char)*p == c) {
      return in;
    }
  }
  return !in;
}

/* The item p..ep against the character at s. */
static int single_match (mstate *ms, const char *s, const char *p, const char *ep) {
  int c;
  step(ms);
  if (s >= ms->src_end) return 0;
  c = (unsigned char)*s;
  switch (*p) {
  case '.':
    return 1;
  case ESC:
    return class_match(c, (unsigned char)p[1]);
  case '[':
    return set_match(c, p, ep - 1);
  default:
    return (unsigned char)*p == c;
  }
}

/* }====================================================== */

/* {====================================================== the matcher */

static const char *match_balance (mstate *ms, const char *s, const char *p) { /* may raise */
  int cont = 1;
  char b, e;
  if (p >= ms->pat_end - 1) luaL_error(ms->L, "malformed pattern (missing arguments to '%%b')");
  if (s >= ms->src_end || *s != *p) return NULL;
  b = p[0];
  e = p[1];
  while (++s < ms->src_end) {
    step(ms);
    if (*s == e) {
      if (--cont == 0) return s + 1;
    } else if (*s == b) {
      cont++;
    }
  }
  return NULL;
}

static const char *max_expand (mstate *ms, const char *s, const char *p, const char *ep) { /* may raise */
  ptrdiff_t i = 0;
  while (single_match(ms, s + i, p, ep)) i++;
  for (; i >= 0; i--) { /* try the longest first */
    const char *res = do_match(ms, s + i, ep + 1);
    if (res) return res;
  }
  return NULL;
}

static const char *min_expand (mstate *ms, const char *s, const char *p, const char *ep) { /* may raise */
  for (;;) {
    const char *res = do_match(ms, s, ep + 1);
    if (res) return res;
    if (!single_match(ms, s, p, ep)) return NULL;
    s++;
  }
}

static const char *start_capture (mstate *ms, const char *s, const char *p, int what) { /* may raise */
  const char *res;
  if (ms->level >= MATCH_MAXCAPTURES) luaL_error(ms->L, "too many captures");
  ms->cap[ms->level].init = s;
  ms->cap[ms->level].len = what;
  ms->level++;
  res = do_match(ms, s, p);
  if (res == NULL) ms->level--;
  return res;
}

static const char *end_capture (mstate *ms, const char *s, const char *p) { /* may raise */
  const char *res;
  int l = ms->level - 1;
  while (l >= 0 && ms->cap[l].len != CAP_UNFINISHED) l--;
  if (l < 0) luaL_error(ms->L, "invalid pattern capture");
  ms->cap[l].len = s - ms->cap[l].init;
  res = do_match(ms, s, p);
  if (res == NULL) ms->cap[l].len = CAP_UNFINISHED;
  return res;
}

static int capture_index (mstate *ms, int c) { /* may raise */
  int l = c - '1';
  if (l < 0 || l >= ms->level || ms->cap[l].len == CAP_UNFINISHED)
    luaL_error(ms->L, "invalid capture index %%%d", l + 1);
  return l;
}

static const char *match_capture (mstate *ms, const char *s, int c) { /* may raise */
  int l = capture_index(ms, c);
  size_t len = (size_t)ms->cap[l].len; /* a position capture: huge, never matches */
  if ((size_t)(ms->src_end - s) >= len && memcmp(ms->cap[l].init, s, len) == 0) {
    for (size_t i = 0; i < len; i += MATCH_CHARGE / 4) step(ms);
    return s + len;
  }
  return NULL;
}

static const char *do_match (mstate *ms, const char *s, const char *p) { /* may raise */
  if (ms->depth-- == 0) luaL_error(ms->L, "pattern too complex");
  for (;;) {
    const char *ep;
    step(ms);
    if (p == ms->pat_end) break;
    switch (*p) {
    case '(':
      s = p[1] == ')' ? start_capture(ms, s, p + 2, CAP_POSITION)
                      : start_capture(ms, s, p + 1, CAP_UNFINISHED);
      goto done;
    case ')':
      s = end_capture(ms, s, p + 1);
      goto done;
    case '$':
      if (p + 1 != ms->pat_end) goto item;
      s = s == ms->src_end ? s : NULL;
      goto done;
    case ESC:
      switch (p[1]) {
      case 'b':
        s = match_balance(ms, s, p + 2);
        if (s == NULL) goto done;
        p += 4;
        continue;
      case 'f': {
        int prev, cur;
        p += 2;
        if (*p != '[') luaL_error(ms->L, "missing '[' after '%%f' in pattern");
        ep = class_end(ms, p);
        prev = s == ms->src ? '\0' : (unsigned char)s[-1];
        cur = s < ms->src_end ? (unsigned char)*s : '\0';
        if (!set_match(prev, p, ep - 1) && set_match(cur, p, ep - 1)) {
          p = ep;
          continue;
        }
        s = NULL;
        goto done;
      }
      case '0':
      case '1':
      case '2':
      case '3':
      case '4':
      case '5':
      case '6':
      case '7':
      case '8':
      case '9':
        s = match_capture(ms, s, (unsigned char)p[1]);
        if (s == NULL) goto done;
        p += 2;
        continue;
      default:
        goto item;
      }
    default:
    item:
      ep = class_end(ms, p);
      if (!single_match(ms, s, p, ep)) {
        if (*ep == '*' || *ep == '?' || *ep == '-') { /* may match nothing */
          p = ep + 1;
          continue;
        }
        s = NULL;
        goto done;
      }
      switch (*ep) {
      case '?': {
        const char *res = do_match(ms, s + 1, ep + 1);
        if (res) {
          s = res;
          goto done;
        }
        p = ep + 1;
        continue;
      }
      case '+':
        s = max_expand(ms, s + 1, p, ep);
        goto done;
      case '*':
        s = max_expand(ms, s, p, ep);
        goto done;
      case '-':
        s = min_expand(ms, s, p, ep);
        goto done;
      default:
        s++;
        p = ep;
        continue;
      }
    }
  }
done:
  ms->depth++;
  return s;
}

/* }====================================================== */

/* {====================================================== captures */

/* Pushes capture i (or the whole match s..e when there are none and i is 0). */
static void push_capture (mstate *ms, int i, const char *s, const char *e) { /* may raise */
  if (i >= ms->level) {
    if (i != 0) luaL_error(ms->L, "invalid capture index %%%d", i + 1);
    lua_pushlstring(ms->L, s, (size_t)(e - s));
    return;
  }
  if (ms->cap[i].len == CAP_UNFINISHED) luaL_error(ms->L, "unfinished capture");
  if (ms->cap[i].len == CAP_POSITION)
    lua_pushinteger(ms->L, (ms->cap[i].init - ms->src) + 1);
  else
    lua_pushlstring(ms->L, ms->cap[i].init, (size_t)ms->cap[i].len);
}

/* Pushes every capture; with none, the whole match (when s is not NULL). */
static int push_captures (mstate *ms, const char *s, const char *e) { /* may raise */
  int n = (ms->level == 0 && s) ? 1 : ms->level;
  luaL_checkstack(ms->L, n, "too many captures");
  for (int i = 0; i < n; i++) push_capture(ms, i, s, e);
  return n;
}

/* }====================================================== */

/* {====================================================== find, match, gmatch, gsub */

/* A 1-based, possibly negative position into a string of len bytes, as a start. */
static size_t start_pos (lua_Integer pos, size_t len) {
  if (pos > 0) return (size_t)pos;
  if (pos == 0) return 1;
  if (pos < -(lua_Integer)len) return 1;
  return len + (size_t)pos + 1;
}

/* Whether p[0..lp) has no magic character (it may hold NULs). */
static int no_specials (const char *p, size_t lp) {
  size_t upto = 0;
  do {
    if (strpbrk(p + upto, SPECIALS)) return 0;
    upto += strlen(p + upto) + 1;
  } while (upto <= lp);
  return 1;
}

static int find_aux (lua_State *L, int find) { /* may raise */
  size_t ls, lp;
  const char *s = luaL_checklstring(L, 1, &ls);
  const char *p = luaL_checklstring(L, 2, &lp);
  size_t init = start_pos(luaL_optinteger(L, 3, 1), ls) - 1;
  mstate ms;
  const char *s1;
  int anchor;
  if (init > ls) {
    luaL_pushfail(L);
    return 1;
  }
  if (find && (lua_toboolean(L, 4) || no_specials(p, lp))) {
    const char *hit;
    sandbox_charge(L, (ls - init) / 64u); /* a linear scan: cheap per byte, not free */
    hit = memmem(s + init, ls - init, p, lp);
    if (hit) {
      lua_pushinteger(L, (hit - s) + 1);
      lua_pushinteger(L, (lua_Integer)((size_t)(hit - s) + lp));
      return 2;
    }
    luaL_pushfail(L);
    return 1;
  }
  anchor = *p == '^';
  if (anchor) {
    p++;
    lp--;
  }
  ms_init(&ms, L, s, ls, p, lp);
  s1 = s + init;
  do {
    const char *e;
    ms_reset(&ms);
    if ((e = do_match(&ms, s1, p)) != NULL) {
      settle(&ms);
      if (find) {
        lua_pushinteger(L, (s1 - s) + 1);
        lua_pushinteger(L, e - s);
        return push_captures(&ms, NULL, NULL) + 2;
      }
      return push_captures(&ms, s1, e);
    }
  } while (s1++ < ms.src_end && !anchor);
  settle(&ms);
  luaL_pushfail(L);
  return 1;
}

static int l_match_find (lua_State *L) { return find_aux(L, 1); }

static int l_match_match (lua_State *L) { return find_aux(L, 0); }

/* gmatch's state; the subject and pattern stay alive as upvalues 1 and 2. */
typedef struct gmatch_state {
  size_t pos;     /* where the next attempt starts */
  ptrdiff_t last; /* end of the last match, or -1 */
} gmatch_state;

static int gmatch_aux (lua_State *L) { /* may raise */
  size_t ls, lp;
  const char *s = lua_tolstring(L, lua_upvalueindex(1), &ls);
  const char *p = lua_tolstring(L, lua_upvalueindex(2), &lp);
  gmatch_state *gm = lua_touserdata(L, lua_upvalueindex(3));
  mstate ms;
  ms_init(&ms, L, s, ls, p, lp);
  for (const char *src = s + gm->pos; src <= ms.src_end; src++) {
    const char *e;
    ms_reset(&ms);
    if ((e = do_match(&ms, src, p)) != NULL && e - s != gm->last) {
      gm->pos = (size_t)(e - s);
      gm->last = e - s;
      settle(&ms);
      return push_captures(&ms, src, e);
    }
  }
  gm->pos = ls + 1;
  settle(&ms);
  return 0;
}

static int l_match_gmatch (lua_State *L) { /* may raise */
  size_t ls;
  gmatch_state *gm;
  size_t init;
  luaL_checklstring(L, 1, &ls);
  luaL_checkstring(L, 2);
  init = start_pos(luaL_optinteger(L, 3, 1), ls) - 1;
  lua_settop(L, 2);
  gm = lua_newuserdatauv(L, sizeof *gm, 0);
  gm->pos = init > ls ? ls + 1 : init;
  gm->last = -1;
  lua_pushcclosure(L, gmatch_aux, 3);
  return 1;
}

/* Adds the replacement string (argument 3) for the match s..e, with its %0-%9 and %%. */
static void add_string (mstate *ms, luaL_Buffer *b, const char *s, const char *e) { /* may raise */
  lua_State *L = ms->L;
  size_t l;
  const char *news = lua_tolstring(L, 3, &l), *p;
  while ((p = memchr(news, ESC, l)) != NULL) {
    luaL_addlstring(b, news, (size_t)(p - news));
    p++;
    if (*p == ESC) {
      luaL_addchar(b, *p);
    } else if (*p == '0') {
      luaL_addlstring(b, s, (size_t)(e - s));
    } else if (isdigit((unsigned char)*p)) {
      push_capture(ms, *p - '1', s, e);
      luaL_tolstring(L, -1, NULL);
      lua_remove(L, -2);
      luaL_addvalue(b);
    } else {
      luaL_error(L, "invalid use of '%c' in replacement string", ESC);
    }
    l -= (size_t)(p + 1 - news);
    news = p + 1;
  }
  luaL_addlstring(b, news, l);
}

/* Adds the replacement of the match s..e; a false or nil replacement keeps the match. */
static void add_value (mstate *ms, luaL_Buffer *b, const char *s, const char *e, int tr) { /* may raise */
  lua_State *L = ms->L;
  switch (tr) {
  case LUA_TFUNCTION: {
    int n;
    lua_pushvalue(L, 3);
    n = push_captures(ms, s, e);
    lua_call(L, n, 1);
    break;
  }
  case LUA_TTABLE:
    push_capture(ms, 0, s, e);
    lua_gettable(L, 3);
    break;
  default:
    add_string(ms, b, s, e);
    return;
  }
  if (!lua_toboolean(L, -1)) {
    lua_pop(L, 1);
    luaL_addlstring(b, s, (size_t)(e - s));
  } else if (!lua_isstring(L, -1)) {
    luaL_error(L, "invalid replacement value (a %s)", luaL_typename(L, -1));
  } else {
    luaL_addvalue(b);
  }
}

static int l_match_gsub (lua_State *L) { /* may raise */
  size_t srcl, lp;
  const char *src = luaL_checklstring(L, 1, &srcl);
  const char *p = luaL_checklstring(L, 2, &lp);
  const char *last = NULL;
  int tr = lua_type(L, 3);
  lua_Integer max_s = luaL_optinteger(L, 4, (lua_Integer)srcl + 1);
  int anchor = *p == '^';
  lua_Integer n = 0;
  mstate ms;
  luaL_Buffer b;
  luaL_argexpected(L, tr == LUA_TNUMBER || tr == LUA_TSTRING || tr == LUA_TFUNCTION || tr == LUA_TTABLE, 3,
                   "string/function/table");
  luaL_buffinit(L, &b);
  if (anchor) {
    p++;
    lp--;
  }
  ms_init(&ms, L, src, srcl, p, lp);
  while (n < max_s) {
    const char *e;
    ms_reset(&ms);
    if ((e = do_match(&ms, src, p)) != NULL && e != last) {
      n++;
      settle(&ms); /* before user code runs */
      add_value(&ms, &b, src, e, tr);
      src = last = e;
    } else if (src < ms.src_end) {
      luaL_addchar(&b, *src++);
    } else {
      break;
    }
    if (anchor) break;
  }
  settle(&ms);
  luaL_addlstring(&b, src, (size_t)(ms.src_end - src));
  luaL_pushresult(&b);
  lua_pushinteger(L, n);
  return 2;
}

/* Replaces find, match, gmatch and gsub in the string table on top of S. */
void sandbox_match_install (lua_State *S) { /* may raise */
  static const luaL_Reg funcs[] = {
      {"find", l_match_find}, {"match", l_match_match}, {"gmatch", l_match_gmatch}, {"gsub", l_match_gsub},
      {NULL, NULL},
  };
  luaL_setfuncs(S, funcs, 0);
}

/* }====================================================== */
