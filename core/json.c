/* json.c — JSON codec for Lua values, usable on any lua_State (see json.h). */
#include "json.h"
#include "lcore.h"

#include <lauxlib.h>

#include <math.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

const char json_null_token = 0;

static const char array_mt_key = 0; /* registry: this state's array metatable */
static const char buf_key = 0;      /* registry: the module's reusable output buffer */

/* {============ growable buffer */

void json_buf_free (json_buf *b) {
  free(b->data);
  b->data = NULL;
  b->len = b->cap = 0;
}

/* Makes room for extra bytes plus the terminating NUL. */
static int buf_reserve (json_buf *b, size_t extra) {
  if (b->cap - b->len > extra) return 0;
  size_t cap = b->cap ? b->cap : 256;
  while (cap - b->len <= extra) {
    if (cap > SIZE_MAX / 2) return -1;
    cap *= 2;
  }
  char *p = realloc(b->data, cap);
  if (p == NULL) return -1;
  b->data = p;
  b->cap = cap;
  return 0;
}

/* }============ */

/* Length of the valid UTF-8 sequence at p (1..4), or 0 when it is invalid
 * (overlong forms, surrogates and code points past U+10FFFF are invalid). */
static size_t utf8_len (const unsigned char *p, size_t avail) {
  unsigned c = p[0];
  if (c < 0x80) return 1;
  if (c < 0xC2) return 0;
  if (c < 0xE0) return avail >= 2 && (p[1] & 0xC0) == 0x80 ? 2 : 0;
  if (c < 0xF0) {
    if (avail < 3 || (p[1] & 0xC0) != 0x80 || (p[2] & 0xC0) != 0x80) return 0;
    if (c == 0xE0 && p[1] < 0xA0) return 0;
    if (c == 0xED && p[1] > 0x9F) return 0;
    return 3;
  }
  if (c < 0xF5) {
    if (avail < 4 || (p[1] & 0xC0) != 0x80 || (p[2] & 0xC0) != 0x80 || (p[3] & 0xC0) != 0x80) return 0;
    if (c == 0xF0 && p[1] < 0x90) return 0;
    if (c == 0xF4 && p[1] > 0x8F) return 0;
    return 4;
  }
  return 0;
}

/* How each byte is written inside a string: 0 as is, a letter for a short
 * escape, 'u' for \u00XX, 'x' for the lead of a multi-byte sequence. */
#define X16(c) c, c, c, c, c, c, c, c, c, c, c, c, c, c, c, c
static const unsigned char esc_class[256] = {
    'u',      'u',      'u',      'u',      'u',      'u',      'u',      'u',
    'b',      't',      'n',      'u',      'f',      'r',      'u',      'u', /* 0x00 */
    X16('u'),                                                                  /* 0x10 */
    0,        0,        '"',      0,        0,        0,        0,        0,
    0,        0,        0,        0,        0,        0,        0,        0, /* 0x20 */
    X16(0),   X16(0),                                                        /* 0x30 */
    0,        0,        0,        0,        0,        0,        0,        0,
    0,        0,        0,        0,        '\\',     0,        0,        0,        /* 0x50 */
    X16(0),   X16(0),                                                               /* 0x60 */
    X16('x'), X16('x'), X16('x'), X16('x'), X16('x'), X16('x'), X16('x'), X16('x'), /* 0x80 */
};
#undef X16

/* {============ encoder */

typedef struct key_ent {
  const char *s; /* the key's bytes, unless isnum */
  size_t len;
  int slot;  /* stack slot of the value */
  int isnum; /* integer key: its decimal text is in num */
  char num[24];
} key_ent;

#define KEY_TEXT(k) ((k)->isnum ? (k)->num : (k)->s)

typedef struct encoder {
  lua_State *L;
  json_buf *b;
  unsigned flags;
  int depth;
  int amt; /* stack slot of the array metatable, or 0 when none exists */
  char *err;
  size_t errlen;
  key_ent *keys; /* a stack of object keys shared by all nesting levels */
  size_t nkeys, capkeys;
  struct {
    const char *key;
    size_t klen;
    lua_Integer idx;
  } path[JSON_MAX_DEPTH + 1];
  key_ent keys0[64];
} encoder;

static void path_format (encoder *e, char *out, size_t outlen) {
  size_t n = 0;
  n += (size_t)snprintf(out, outlen, "$");
  for (int i = 0; i < e->depth && n < outlen; i++) {
    const char *k = e->path[i].key;
    if (k == NULL) {
      n += (size_t)snprintf(out + n, outlen - n, "[%lld]", (long long)e->path[i].idx);
      continue;
    }
    int ident = e->path[i].klen > 0 && (k[0] == '_' || ((k[0] | 0x20) >= 'a' && (k[0] | 0x20) <= 'z'));
    for (size_t j = 1; ident && j < e->path[i].klen; j++) {
      char c = k[j];
      ident = c == '_' || (c >= '0' && c <= '9') || ((c | 0x20) >= 'a' && (c | 0x20) <= 'z');
    }
    int klen = e->path[i].klen > 40 ? 40 : (int)e->path[i].klen;
    if (ident)
      n += (size_t)snprintf(out + n, outlen - n, ".%.*s%s", klen, k, e->path[i].klen > 40 ? "..." : "");
    else
      n += (size_t)snprintf(out + n, outlen - n, "[\"%.*s%s\"]", klen, k, e->path[i].klen > 40 ? "..." : "");
  }
}

/* Records "<what> at <path>" and returns -1. */
static int enc_fail (encoder *e, const char *what) {
  char path[512];
  path_format(e, path, sizeof path);
  snprintf(e->err, e->errlen, "%s at %s", what, path);
  return -1;
}

static int enc_oom (encoder *e) {
  snprintf(e->err, e->errlen, "out of memory");
  return -1;
}

static int put (encoder *e, const char *s, size_t n) {
  if (buf_reserve(e->b, n) < 0) return enc_oom(e);
  memcpy(e->b->data + e->b->len, s, n);
  e->b->len += n;
  return 0;
}

#define PUTLIT(e, lit) put((e), (lit), sizeof(lit) - 1)

static int put_char (encoder *e, char c) {
  if (buf_reserve(e->b, 1) < 0) return enc_oom(e);
  e->b->data[e->b->len++] = c;
  return 0;
}

static int put_indent (encoder *e, int level) {
  size_t n = 1 + 2 * (size_t)level;
  if (buf_reserve(e->b, n) < 0) return enc_oom(e);
  char *p = e->b->data + e->b->len;
  p[0] = '\n';
  memset(p + 1, ' ', n - 1);
  e->b->len += n;
  return 0;
}

static int put_integer (encoder *e, lua_Integer v) {
  char tmp[24], *p = tmp + sizeof tmp;
  uint64_t u = v < 0 ? (uint64_t)0 - (uint64_t)v : (uint64_t)v;
  do {
    *--p = (char)('0' + u % 10);
    u /= 10;
  } while (u);
  if (v < 0) *--p = '-';
  return put(e, p, (size_t)(tmp + sizeof tmp - p));
}

static int put_float (encoder *e, lua_Number d) {
  if (isnan(d)) return enc_fail(e, "cannot encode NaN");
  if (isinf(d)) return enc_fail(e, d > 0 ? "cannot encode inf" : "cannot encode -inf");
  char tmp[40];
  int n = snprintf(tmp, sizeof tmp, "%.15g", (double)d);
  if (strtod(tmp, NULL) != (double)d) n = snprintf(tmp, sizeof tmp, "%.17g", (double)d);
  if (strpbrk(tmp, ".eE") == NULL) { /* integral: keep it a float on the way back */
    tmp[n++] = '.';
    tmp[n++] = '0';
  }
  return put(e, tmp, (size_t)n);
}

static int put_string (encoder *e, const char *s, size_t len) {
  const unsigned char *p = (const unsigned char *)s, *end = p + len;
  /* Fast path: nothing to escape or check. */
  size_t i = 0;
  while (i < len && esc_class[p[i]] == 0) i++;
  if (buf_reserve(e->b, len + 2) < 0) return enc_oom(e);
  e->b->data[e->b->len++] = '"';
  memcpy(e->b->data + e->b->len, s, i);
  e->b->len += i;
  p += i;
  while (p < end) {
    const unsigned char *run = p;
    while (p < end && esc_class[*p] == 0) p++;
    if (p > run && put(e, (const char *)run, (size_t)(p - run)) < 0) return -1;
    if (p == end) break;
    unsigned char c = *p, k = esc_class[c];
    if (k == 'x') {
      size_t n = utf8_len(p, (size_t)(end - p));
      if (n == 0) return enc_fail(e, "cannot encode a string that is not valid UTF-8");
      if (put(e, (const char *)p, n) < 0) return -1;
      p += n;
    } else if (k == 'u') {
      static const char hex[] = "0123456789abcdef";
      char u[6] = {'\\', 'u', '0', '0', hex[c >> 4], hex[c & 15]};
      if (put(e, u, 6) < 0) return -1;
      p++;
    } else {
      char two[2] = {'\\', (char)k};
      if (put(e, two, 2) < 0) return -1;
      p++;
    }
  }
  return put_char(e, '"');
}

static int encode_value(encoder *e, int idx);

static int key_cmp (const void *a, const void *b) {
  const key_ent *x = a, *y = b;
  size_t n = x->len < y->len ? x->len : y->len;
  int c = memcmp(KEY_TEXT(x), KEY_TEXT(y), n);
  if (c) return c;
  return x->len < y->len ? -1 : x->len > y->len;
}

static int keys_push (encoder *e, key_ent **out) {
  if (e->nkeys == e->capkeys) {
    size_t cap = e->capkeys * 2;
    key_ent *k;
    if (e->keys == e->keys0) {
      k = malloc(cap * sizeof *k);
      if (k) memcpy(k, e->keys0, e->nkeys * sizeof *k);
    } else {
      k = realloc(e->keys, cap * sizeof *k);
    }
    if (k == NULL) return enc_oom(e);
    e->keys = k;
    e->capkeys = cap;
  }
  *out = &e->keys[e->nkeys++];
  return 0;
}

static int encode_array (encoder *e, int idx, lua_Integer n) {
  lua_State *L = e->L;
  int pretty = e->flags & JSON_PRETTY;
  if (put_char(e, '[') < 0) return -1;
  for (lua_Integer i = 1; i <= n; i++) {
    if (i > 1 && put_char(e, ',') < 0) return -1;
    if (pretty && put_indent(e, e->depth + 1) < 0) return -1;
    e->path[e->depth].key = NULL;
    e->path[e->depth].idx = i;
    lua_rawgeti(L, idx, i);
    e->depth++;
    int r = encode_value(e, lua_gettop(L));
    e->depth--;
    lua_pop(L, 1);
    if (r < 0) return -1;
  }
  if (pretty && n > 0 && put_indent(e, e->depth) < 0) return -1;
  return put_char(e, ']');
}

/* Collects the keys (values stay on the stack), sorts them, writes the object. */
static int encode_object (encoder *e, int idx) {
  lua_State *L = e->L;
  int pretty = e->flags & JSON_PRETTY;
  int base = lua_gettop(L);
  size_t first = e->nkeys;
  int r = 0;
  lua_pushnil(L);
  while (lua_next(L, idx)) {
    key_ent *k;
    if (!lua_checkstack(L, 3) || keys_push(e, &k) < 0) {
      r = enc_oom(e);
      break;
    }
    int kt = lua_type(L, -2);
    k->isnum = 0;
    if (kt == LUA_TSTRING) {
      k->s = lua_tolstring(L, -2, &k->len);
    } else if (kt == LUA_TNUMBER && lua_isinteger(L, -2)) {
      k->isnum = 1;
      k->len = (size_t)snprintf(k->num, sizeof k->num, "%lld", (long long)lua_tointeger(L, -2));
    } else {
      char what[80];
      snprintf(what, sizeof what, "cannot encode a %s key",
               kt == LUA_TNUMBER ? "non-integer number" : lua_typename(L, kt));
      r = enc_fail(e, what);
      break;
    }
    lua_insert(L, -2); /* value below the key; the key drives lua_next */
    k->slot = lua_gettop(L) - 1;
  }
  size_t count = e->nkeys - first;
  if (r == 0 && count > 1) {
    qsort(e->keys + first, count, sizeof(key_ent), key_cmp);
    for (size_t i = first + 1; i < e->nkeys; i++) {
      if (key_cmp(&e->keys[i - 1], &e->keys[i]) == 0) {
        char what[128];
        snprintf(what, sizeof what, "cannot encode duplicate key \"%.40s\" (a string and an integer)",
                 KEY_TEXT(&e->keys[i]));
        r = enc_fail(e, what);
        break;
      }
    }
  }
  if (r == 0) r = put_char(e, '{');
  for (size_t i = 0; r == 0 && i < count; i++) {
    key_ent *k = &e->keys[first + i]; /* re-fetched: nested levels may move the array */
    if (i > 0 && (r = put_char(e, ',')) < 0) break;
    if (pretty && (r = put_indent(e, e->depth + 1)) < 0) break;
    if ((r = put_string(e, KEY_TEXT(k), k->len)) < 0) break;
    if ((r = pretty ? PUTLIT(e, ": ") : put_char(e, ':')) < 0) break;
    e->path[e->depth].key = KEY_TEXT(k);
    e->path[e->depth].klen = k->len;
    int slot = k->slot;
    e->depth++;
    r = encode_value(e, slot);
    e->depth--;
  }
  if (r == 0 && pretty && count > 0) r = put_indent(e, e->depth);
  if (r == 0) r = put_char(e, '}');
  e->nkeys = first;
  lua_settop(L, base);
  return r;
}

static int encode_table (encoder *e, int idx) {
  lua_State *L = e->L;
  if (e->depth >= JSON_MAX_DEPTH) {
    char what[80];
    snprintf(what, sizeof what, "cannot encode tables nested deeper than %d (a cycle?)", JSON_MAX_DEPTH);
    return enc_fail(e, what);
  }
  if (!lua_checkstack(L, 4)) return enc_oom(e);
  if (e->amt && lua_getmetatable(L, idx)) {
    int is_array = lua_rawequal(L, -1, e->amt);
    lua_pop(L, 1);
    if (is_array) return encode_array(e, idx, (lua_Integer)lua_rawlen(L, idx));
  }
  /* A plain table is an array when its keys are exactly 1..n, n > 0. */
  lua_Integer n = (lua_Integer)lua_rawlen(L, idx);
  if (n > 0) {
    lua_Integer count = 0;
    int seq = 1;
    lua_pushnil(L);
    while (lua_next(L, idx)) {
      lua_Integer k;
      if (lua_type(L, -2) != LUA_TNUMBER || !lua_isinteger(L, -2) || (k = lua_tointeger(L, -2)) < 1 ||
          k > n) {
        seq = 0;
        lua_pop(L, 2);
        break;
      }
      count++;
      lua_pop(L, 1);
    }
    if (seq && count == n) return encode_array(e, idx, n);
  }
  return encode_object(e, idx);
}

static int encode_value (encoder *e, int idx) {
  lua_State *L = e->L;
  switch (lua_type(L, idx)) {
  case LUA_TNIL:
    return PUTLIT(e, "null");
  case LUA_TBOOLEAN:
    return lua_toboolean(L, idx) ? PUTLIT(e, "true") : PUTLIT(e, "false");
  case LUA_TNUMBER:
    if (lua_isinteger(L, idx)) return put_integer(e, lua_tointeger(L, idx));
    return put_float(e, lua_tonumber(L, idx));
  case LUA_TSTRING: {
    size_t len;
    const char *s = lua_tolstring(L, idx, &len);
    return put_string(e, s, len);
  }
  case LUA_TTABLE:
    return encode_table(e, idx);
  case LUA_TLIGHTUSERDATA:
    if (lua_touserdata(L, idx) == json_null) return PUTLIT(e, "null");
    return enc_fail(e, "cannot encode a light userdata");
  default: {
    char what[64];
    snprintf(what, sizeof what, "cannot encode a %s", luaL_typename(L, idx));
    return enc_fail(e, what);
  }
  }
}

int json_encode (lua_State *L, int idx, json_buf *out, unsigned flags, char *err, size_t errlen) {
  encoder e;
  idx = lua_absindex(L, idx);
  e.L = L;
  e.b = out;
  e.flags = flags;
  e.depth = 0;
  e.err = err;
  e.errlen = errlen;
  e.keys = e.keys0;
  e.nkeys = 0;
  e.capkeys = sizeof e.keys0 / sizeof e.keys0[0];
  if (!lua_checkstack(L, 4)) return enc_oom(&e);
  int top = lua_gettop(L);
  /* Arrays are recognised by their metatable; if none exists yet, none has it. */
  e.amt = 0;
  if (lua_rawgetp(L, LUA_REGISTRYINDEX, &array_mt_key) == LUA_TTABLE) e.amt = lua_gettop(L);
  size_t start = out->len;
  int r = encode_value(&e, idx);
  lua_settop(L, top);
  if (e.keys != e.keys0) free(e.keys);
  if (r < 0) {
    out->len = start;
    if (out->data) out->data[start] = '\0';
    return -1;
  }
  if (out->data) out->data[out->len] = '\0';
  return 0;
}

/* }============ */

/* {============ decoder */

typedef struct decoder {
  lua_State *L;
  const char *s, *p, *end;
  int depth;
  int amt; /* stack slot of the array metatable */
  const char *errpos;
  const char *errmsg;
} decoder;

static int dec_fail (decoder *d, const char *at, const char *msg) {
  d->errpos = at;
  d->errmsg = msg;
  return -1;
}

static void skip_ws (decoder *d) {
  const char *p = d->p;
  while (p < d->end && (*p == ' ' || *p == '\n' || *p == '\r' || *p == '\t')) p++;
  d->p = p;
}

static int hexval (int c) {
  if (c >= '0' && c <= '9') return c - '0';
  c |= 0x20;
  if (c >= 'a' && c <= 'f') return c - 'a' + 10;
  return -1;
}

static int read_hex4 (decoder *d, const char *p, unsigned *out) {
  if (d->end - p < 4) return dec_fail(d, p, "bad \\u escape");
  unsigned v = 0;
  for (int i = 0; i < 4; i++) {
    int h = hexval((unsigned char)p[i]);
    if (h < 0) return dec_fail(d, p, "bad \\u escape");
    v = v << 4 | (unsigned)h;
  }
  *out = v;
  return 0;
}

static size_t put_utf8 (char *o, unsigned cp) {
  if (cp < 0x80) {
    o[0] = (char)cp;
    return 1;
  }
  if (cp < 0x800) {
    o[0] = (char)(0xC0 | cp >> 6);
    o[1] = (char)(0x80 | (cp & 0x3F));
    return 2;
  }
  if (cp < 0x10000) {
    o[0] = (char)(0xE0 | cp >> 12);
    o[1] = (char)(0x80 | (cp >> 6 & 0x3F));
    o[2] = (char)(0x80 | (cp & 0x3F));
    return 3;
  }
  o[0] = (char)(0xF0 | cp >> 18);
  o[1] = (char)(0x80 | (cp >> 12 & 0x3F));
  o[2] = (char)(0x80 | (cp >> 6 & 0x3F));
  o[3] = (char)(0x80 | (cp & 0x3F));
  return 4;
}

/* Decodes the escaped string body [p, q) into out (which holds q - p bytes:
 * every escape is at least as long as what it stands for). */
static int unescape (decoder *d, const char *p, const char *q, char *out, size_t *outlen) {
  char *o = out;
  while (p < q) {
    unsigned char c = (unsigned char)*p;
    if (c != '\\') {
      if (c < 0x20) return dec_fail(d, p, "control character in string");
      size_t n = c < 0x80 ? 1 : utf8_len((const unsigned char *)p, (size_t)(q - p));
      if (n == 0) return dec_fail(d, p, "invalid UTF-8 in string");
      memcpy(o, p, n);
      o += n;
      p += n;
      continue;
    }
    const char *at = p;
    p++;
    switch (*p) {
    case '"':
      *o++ = '"';
      p++;
      break;
    case '\\':
      *o++ = '\\';
      p++;
      break;
    case '/':
      *o++ = '/';
      p++;
      break;
    case 'b':
      *o++ = '\b';
      p++;
      break;
    case 'f':
      *o++ = '\f';
      p++;
      break;
    case 'n':
      *o++ = '\n';
      p++;
      break;
    case 'r':
      *o++ = '\r';
      p++;
      break;
    case 't':
      *o++ = '\t';
      p++;
      break;
    case 'u': {
      unsigned cp, lo;
      if (read_hex4(d, p + 1, &cp) < 0) return -1;
      p += 5;
      if (cp >= 0xDC00 && cp <= 0xDFFF) return dec_fail(d, at, "lone surrogate in \\u escape");
      if (cp >= 0xD800 && cp <= 0xDBFF) {
        if (q - p < 6 || p[0] != '\\' || p[1] != 'u' || read_hex4(d, p + 2, &lo) < 0 || lo < 0xDC00 ||
            lo > 0xDFFF)
          return dec_fail(d, at, "lone surrogate in \\u escape");
        p += 6;
        cp = 0x10000 + ((cp - 0xD800) << 10) + (lo - 0xDC00);
      }
      o += put_utf8(o, cp);
      break;
    }
    default:
      return dec_fail(d, at, "invalid escape in string");
    }
  }
  *outlen = (size_t)(o - out);
  return 0;
}

static int parse_string (decoder *d) {
  const char *start = ++d->p, *p = start, *end = d->end;
  int escaped = 0;
  while (p < end) {
    unsigned char c = (unsigned char)*p;
    if (c == '"') break;
    if (c == '\\') {
      escaped = 1;
      p += 2; /* the escaped character cannot end the string */
      continue;
    }
    if (c < 0x20) return dec_fail(d, p, "control character in string");
    if (c < 0x80) {
      p++;
      continue;
    }
    size_t n = utf8_len((const unsigned char *)p, (size_t)(end - p));
    if (n == 0) return dec_fail(d, p, "invalid UTF-8 in string");
    p += n;
  }
  if (p >= end) return dec_fail(d, start - 1, "unterminated string");
  d->p = p + 1;
  if (!escaped) {
    lua_pushlstring(d->L, start, (size_t)(p - start));
    return 0;
  }
  size_t raw = (size_t)(p - start), len = 0;
  char small[256] = {0};
  char *out = small;
  if (raw > sizeof small) out = lua_newuserdatauv(d->L, raw, 0); /* freed by the GC */
  if (unescape(d, start, p, out, &len) < 0) return -1;
  lua_pushlstring(d->L, out, len);
  if (out != small) lua_remove(d->L, -2);
  return 0;
}

static int parse_number (decoder *d) {
  const char *start = d->p, *p = start, *end = d->end;
  int neg = 0, isfloat = 0;
  if (p < end && *p == '-') {
    neg = 1;
    p++;
  }
  if (p >= end || *p < '0' || *p > '9') return dec_fail(d, start, "invalid number");
  if (*p == '0') {
    p++;
    if (p < end && *p >= '0' && *p <= '9') return dec_fail(d, start, "invalid number (leading zero)");
  } else {
    while (p < end && *p >= '0' && *p <= '9') p++;
  }
  const char *int_end = p;
  if (p < end && *p == '.') {
    isfloat = 1;
    p++;
    if (p >= end || *p < '0' || *p > '9') return dec_fail(d, start, "invalid number");
    while (p < end && *p >= '0' && *p <= '9') p++;
  }
  if (p < end && (*p == 'e' || *p == 'E')) {
    isfloat = 1;
    p++;
    if (p < end && (*p == '+' || *p == '-')) p++;
    if (p >= end || *p < '0' || *p > '9') return dec_fail(d, start, "invalid number");
    while (p < end && *p >= '0' && *p <= '9') p++;
  }
  d->p = p;
  if (!isfloat) {
    uint64_t v = 0;
    int overflow = 0;
    for (const char *q = start + neg; q < int_end; q++) {
      unsigned digit = (unsigned)(*q - '0');
      if (v > (UINT64_MAX - digit) / 10) {
        overflow = 1;
        break;
      }
      v = v * 10 + digit;
    }
    if (!overflow && (neg ? v <= (uint64_t)INT64_MAX + 1 : v <= (uint64_t)INT64_MAX)) {
      lua_pushinteger(d->L, neg ? (lua_Integer)(0 - v) : (lua_Integer)v);
      return 0;
    }
  }
  /* strtod needs a terminated copy: the input is not NUL-terminated. */
  size_t n = (size_t)(p - start);
  char small[64];
  double v;
  if (n < sizeof small) {
    memcpy(small, start, n);
    small[n] = '\0';
    v = strtod(small, NULL);
  } else {
    lua_pushlstring(d->L, start, n);
    v = strtod(lua_tostring(d->L, -1), NULL);
    lua_pop(d->L, 1);
  }
  if (isinf(v)) return dec_fail(d, start, "number out of range");
  lua_pushnumber(d->L, (lua_Number)v);
  return 0;
}

static int parse_value(decoder *d);

static int parse_literal (decoder *d, const char *word, size_t n) {
  if ((size_t)(d->end - d->p) < n || memcmp(d->p, word, n) != 0) return dec_fail(d, d->p, "expected a value");
  d->p += n;
  return 0;
}

static int parse_array (decoder *d) {
  lua_State *L = d->L;
  const char *open = d->p++;
  if (++d->depth > JSON_MAX_DEPTH) return dec_fail(d, open, "nesting too deep");
  luaL_checkstack(L, 4, "JSON nesting");
  lua_newtable(L);
  lua_pushvalue(L, d->amt);
  lua_setmetatable(L, -2);
  skip_ws(d);
  if (d->p < d->end && *d->p == ']') {
    d->p++;
    d->depth--;
    return 0;
  }
  for (lua_Integer i = 1;; i++) {
    if (parse_value(d) < 0) return -1;
    lua_rawseti(L, -2, i);
    skip_ws(d);
    if (d->p >= d->end) return dec_fail(d, d->p, "expected ',' or ']'");
    char c = *d->p++;
    if (c == ']') break;
    if (c != ',') return dec_fail(d, d->p - 1, "expected ',' or ']'");
    skip_ws(d);
  }
  d->depth--;
  return 0;
}

static int parse_object (decoder *d) {
  lua_State *L = d->L;
  const char *open = d->p++;
  if (++d->depth > JSON_MAX_DEPTH) return dec_fail(d, open, "nesting too deep");
  luaL_checkstack(L, 4, "JSON nesting");
  lua_newtable(L);
  skip_ws(d);
  if (d->p < d->end && *d->p == '}') {
    d->p++;
    d->depth--;
    return 0;
  }
  for (;;) {
    if (d->p >= d->end || *d->p != '"') return dec_fail(d, d->p, "expected a string key");
    if (parse_string(d) < 0) return -1;
    skip_ws(d);
    if (d->p >= d->end || *d->p != ':') return dec_fail(d, d->p, "expected ':'");
    d->p++;
    skip_ws(d);
    if (parse_value(d) < 0) return -1;
    lua_rawset(L, -3);
    skip_ws(d);
    if (d->p >= d->end) return dec_fail(d, d->p, "expected ',' or '}'");
    char c = *d->p++;
    if (c == '}') break;
    if (c != ',') return dec_fail(d, d->p - 1, "expected ',' or '}'");
    skip_ws(d);
  }
  d->depth--;
  return 0;
}

static int parse_value (decoder *d) {
  if (d->p >= d->end) return dec_fail(d, d->p, "unexpected end of input");
  switch (*d->p) {
  case '{':
    return parse_object(d);
  case '[':
    return parse_array(d);
  case '"':
    return parse_string(d);
  case 't':
    if (parse_literal(d, "true", 4) < 0) return -1;
    lua_pushboolean(d->L, 1);
    return 0;
  case 'f':
    if (parse_literal(d, "false", 5) < 0) return -1;
    lua_pushboolean(d->L, 0);
    return 0;
  case 'n':
    if (parse_literal(d, "null", 4) < 0) return -1;
    lua_pushlightuserdata(d->L, json_null);
    return 0;
  default:
    if (*d->p == '-' || (*d->p >= '0' && *d->p <= '9')) return parse_number(d);
    return dec_fail(d, d->p, "expected a value");
  }
}

int json_decode (lua_State *L, const char *s, size_t len) {
  decoder d;
  luaL_checkstack(L, 4, "JSON decode");
  json_push_array_mt(L);
  d.L = L;
  d.s = d.p = s;
  d.end = s + len;
  d.depth = 0;
  d.amt = lua_gettop(L);
  d.errpos = NULL;
  d.errmsg = NULL;
  skip_ws(&d);
  int r = parse_value(&d);
  if (r == 0) {
    skip_ws(&d);
    if (d.p < d.end) r = dec_fail(&d, d.p, "unexpected text after the value");
  }
  if (r == 0) {
    lua_remove(L, d.amt);
    return 1;
  }
  int line = 1;
  const char *bol = s;
  for (const char *q = s; q < d.errpos; q++)
    if (*q == '\n') {
      line++;
      bol = q + 1;
    }
  lua_settop(L, d.amt - 1);
  lua_pushfstring(L, "bad JSON at line %d col %d: %s", line, (int)(d.errpos - bol) + 1, d.errmsg);
  return 0;
}

/* }============ */

/* {============ Lua API */

void json_push_array_mt (lua_State *L) {
  if (lua_rawgetp(L, LUA_REGISTRYINDEX, &array_mt_key) == LUA_TTABLE) return;
  lua_pop(L, 1);
  lua_createtable(L, 0, 1);
  lua_pushliteral(L, "json.array");
  lua_setfield(L, -2, "__name");
  lua_pushvalue(L, -1);
  lua_rawsetp(L, LUA_REGISTRYINDEX, &array_mt_key);
}

static int l_buf_gc (lua_State *L) {
  json_buf_free(lua_touserdata(L, 1));
  return 0;
}

/* The state's reusable output buffer (a userdata that frees it when collected),
 * so encode allocates nothing in the steady state and leaks nothing on errors. */
static json_buf *state_buf (lua_State *L) {
  json_buf *b;
  if (lua_rawgetp(L, LUA_REGISTRYINDEX, &buf_key) == LUA_TUSERDATA) {
    b = lua_touserdata(L, -1);
  } else {
    lua_pop(L, 1);
    b = lua_newuserdatauv(L, sizeof *b, 0);
    memset(b, 0, sizeof *b);
    lua_createtable(L, 0, 1);
    lua_pushcfunction(L, l_buf_gc);
    lua_setfield(L, -2, "__gc");
    lua_setmetatable(L, -2);
    lua_pushvalue(L, -1);
    lua_rawsetp(L, LUA_REGISTRYINDEX, &buf_key);
  }
  lua_pop(L, 1); /* the registry keeps it alive */
  return b;
}

static int l_json_encode (lua_State *L) {
  unsigned flags = 0;
  luaL_checkany(L, 1);
  if (!lua_isnoneornil(L, 2)) {
    luaL_checktype(L, 2, LUA_TTABLE);
    lua_getfield(L, 2, "pretty");
    if (lua_toboolean(L, -1)) flags |= JSON_PRETTY;
    lua_pop(L, 1);
  }
  json_buf *b = state_buf(L);
  char err[256];
  b->len = 0;
  if (json_encode(L, 1, b, flags, err, sizeof err) < 0) {
    lua_pushnil(L);
    lua_pushstring(L, err);
    return 2;
  }
  lua_pushlstring(L, b->data, b->len);
  if (b->cap > (1u << 20)) json_buf_free(b); /* do not hold on to a huge buffer */
  return 1;
}

static int l_json_decode (lua_State *L) {
  size_t len;
  const char *s = luaL_checklstring(L, 1, &len);
  if (json_decode(L, s, len)) return 1;
  lua_pushnil(L);
  lua_insert(L, -2);
  return 2;
}

/* array([t]) marks t (or a new table) as a JSON array and returns it. */
static int l_json_array (lua_State *L) {
  if (lua_isnoneornil(L, 1)) {
    lua_settop(L, 0);
    lua_newtable(L);
  } else {
    luaL_checktype(L, 1, LUA_TTABLE);
    lua_settop(L, 1);
  }
  json_push_array_mt(L);
  lua_setmetatable(L, 1);
  return 1;
}

static int l_json_is_array (lua_State *L) {
  int is = 0;
  if (lua_type(L, 1) == LUA_TTABLE && lua_getmetatable(L, 1)) {
    json_push_array_mt(L);
    is = lua_rawequal(L, -1, -2);
    lua_pop(L, 2);
  }
  lua_pushboolean(L, is);
  return 1;
}

static const luaL_Reg json_fns[] = {
    {"encode", l_json_encode},
    {"decode", l_json_decode},
    {"array", l_json_array},
    {"is_array", l_json_is_array},
    {NULL, NULL},
};

int json_luaopen (lua_State *L) {
  luaL_newlib(L, json_fns);
  lua_pushlightuserdata(L, json_null);
  lua_setfield(L, -2, "null");
  json_push_array_mt(L);
  lua_setfield(L, -2, "array_mt");
  return 1;
}

void json_install (lua_State *L) {
  luaL_newlib(L, json_fns);
  lua_pushlightuserdata(L, json_null);
  lua_setfield(L, -2, "null");
  lua_setglobal(L, "json");
}

/* }============ */
