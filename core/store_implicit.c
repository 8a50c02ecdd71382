/* store_implicit.c — the channels a process has without anyone creating them,
 * made on first use (a send, a subscription, channel_create) instead of with
 * the process: most processes never use most of them, and creating them
 * eagerly was most of what creating or spawning a process wrote.
 *
 *   io:stdin|stdout|stderr:<name>  owned by <name>; <name> handles its stdin
 *   cog:from:<name>                guidance from <name>'s parent: owned by it
 *   cog:to:<name>                  <name>'s replies to its parent: owned by <name>
 *   spawn:<a id>→<b id>            a parent and its child, either way: owned by a;
 *                                  the child handles its parent's channel to it
 */
#include "store_int.h"

#include <stdio.h>
#include <string.h>

typedef struct implicit {
  const char *type; /* the channel_type it is made with */
  store_id owner;
  store_id handler; /* the process that handles it; empty: none */
  int64_t handler_epoch;
} implicit;

static const char *after (const char *name, const char *prefix) {
  size_t n = strlen(prefix);
  return strncmp(name, prefix, n) == 0 && name[n] != '\0' ? name + n : NULL;
}

/* Fills *im for an implicit channel name: 1, 0 when it names none, -1. */
static int resolve (store_t *s, const char *name, implicit *im) {
  store_proc p, q;
  const char *rest;
  int r = 0;
  im->handler[0] = '\0';
  im->type = "implicit";
  int is_stdin = (rest = after(name, "io:stdin:")) != NULL;
  if (is_stdin || (rest = after(name, "io:stdout:")) || (rest = after(name, "io:stderr:")) ||
      (rest = after(name, "cog:to:"))) {
    if (store_is_uuid(rest, strlen(rest)) || (r = store_proc_find(s, rest, &p)) <= 0) return r < 0 ? -1 : 0;
    if (name[0] == 'c') im->type = "named";
    memcpy(im->owner, p.id, sizeof im->owner);
    if (is_stdin) {
      memcpy(im->handler, p.id, sizeof im->handler);
      im->handler_epoch = p.epoch;
    }
    return 1;
  }
  if ((rest = after(name, "cog:from:"))) {
    if (store_is_uuid(rest, strlen(rest)) || (r = store_proc_find(s, rest, &p)) <= 0) return r < 0 ? -1 : 0;
    if (p.parent[0] == '\0') return 0;
    im->type = "named";
    memcpy(im->owner, p.parent, sizeof im->owner);
    return 1;
  }
  if ((rest = after(name, "spawn:"))) {
    if (strlen(rest) != 2 * STORE_ID_LEN + STORE_ARROW_LEN ||
        memcmp(rest + STORE_ID_LEN, STORE_ARROW, STORE_ARROW_LEN) != 0 ||
        !store_is_uuid(rest, STORE_ID_LEN) ||
        !store_is_uuid(rest + STORE_ID_LEN + STORE_ARROW_LEN, STORE_ID_LEN))
      return 0;
    store_id a;
    memcpy(a, rest, STORE_ID_LEN);
    a[STORE_ID_LEN] = '\0';
    if ((r = store_proc_by_id(s, a, &p)) <= 0 ||
        (r = store_proc_by_id(s, rest + STORE_ID_LEN + STORE_ARROW_LEN, &q)) <= 0)
      return r < 0 ? -1 : 0;
    im->type = "spawn";
    memcpy(im->owner, p.id, sizeof im->owner);
    if (strcmp(q.parent, p.id) == 0) { /* parent to child */
      memcpy(im->handler, q.id, sizeof im->handler);
      im->handler_epoch = q.epoch;
      return 1;
    }
    return strcmp(p.parent, q.id) == 0;
  }
  return 0;
}

int store_implicit_handler (store_t *s, const char *pid, const char *cname, int64_t epoch, const char *now) {
  store_id hid;
  store_q *q = store_q_get(s, "INSERT INTO handler (id, process, channel, enabled, epoch, created_at) "
                              "SELECT ?, ?, c.id, 1, ?, ? FROM channel c WHERE c.name = ? "
                              "ON CONFLICT (process, channel) DO UPDATE SET enabled = 1 WHERE enabled = 0");
  if (q == NULL) return -1;
  store_uuid(s, hid);
  store_bind_text(s, q, 1, hid);
  store_bind_text(s, q, 2, pid);
  store_bind_int(s, q, 3, epoch);
  store_bind_text(s, q, 4, now);
  store_bind_text(s, q, 5, cname);
  return store_exec_q(s, q);
}

int store_implicit_latent (store_t *s, const char *name) {
  implicit im;
  return resolve(s, name, &im);
}

int store_implicit_adopt (store_t *s, const char *name, const char *now) {
  implicit im;
  int r = resolve(s, name, &im);
  if (r <= 0) return r;
  store_q *q = store_q_get(s, "UPDATE channel SET owner = ? WHERE name = ? AND owner IS NULL");
  if (q == NULL) return -1;
  store_bind_text(s, q, 1, im.owner);
  store_bind_text(s, q, 2, name);
  if (store_exec_q(s, q) < 0) return -1;
  return im.handler[0] ? store_implicit_handler(s, im.handler, name, im.handler_epoch, now) : 0;
}

int store_implicit_create (store_t *s, const char *name, store_id id) {
  implicit im;
  int r = resolve(s, name, &im);
  if (r <= 0) return r;
  char now[STORE_TS_LEN + 1];
  store_now(s, now);
  store_q *q = store_q_get(s, "INSERT INTO channel (id, name, owner, channel_type, auto_close, created_at) "
                              "VALUES (?, ?, ?, ?, 0, ?)");
  if (q == NULL) return -1;
  store_uuid(s, id);
  store_bind_text(s, q, 1, id);
  store_bind_text(s, q, 2, name);
  store_bind_text(s, q, 3, im.owner);
  store_bind_text(s, q, 4, im.type);
  store_bind_text(s, q, 5, now);
  if (store_exec_q(s, q) < 0) return -1;
  if (im.handler[0] && store_implicit_handler(s, im.handler, name, im.handler_epoch, now) < 0) return -1;
  return 1;
}
