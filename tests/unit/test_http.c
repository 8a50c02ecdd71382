/* test_http.c — the yield path of core.http when many transfers run at once:
 * past HTTP_CROWD in flight, transfers get curl's smallest buffers (1 KB
 * receive, 16 KB upload) and must still move bodies over 64 KB both ways,
 * buffered and streamed (on_data); after the burst at most 64 connections stay
 * open idle. Against a loopback echo server in node (a test dependency). */
#include "host.h"
#include "unit.h"

#include <dirent.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <sys/types.h>
#include <unistd.h>

/* loop.h pulls in uv.h, whose <sched.h> would resolve to core/sched.h under
 * the tests' -Icore: the one function needed is declared here. */
void loop_close(void);

/* Echoes POST bodies after 300 ms, so every request of the test is in flight
 * at once; the answer goes out in 8 KB writes. */
static const char *server_js =
    "const http = require('node:http');\n"
    "const s = http.createServer((req, res) => {\n"
    "  const parts = [];\n"
    "  req.on('data', (c) => parts.push(c));\n"
    "  req.on('end', () => setTimeout(() => {\n"
    "    const b = Buffer.concat(parts);\n"
    "    res.writeHead(200, {'content-type': 'application/octet-stream'});\n"
    "    for (let i = 0; i < b.length; i += 8192) res.write(b.subarray(i, i + 8192));\n"
    "    res.end();\n"
    "  }, 300));\n"
    "});\n"
    "s.keepAliveTimeout = 60000;\n"
    "s.listen({port: 0, host: '127.0.0.1', backlog: 1024}, () => {\n"
    "  process.stdout.write('listening ' + s.address().port + '\\n');\n"
    "});\n"
    "setTimeout(() => process.exit(0), 120000).unref();\n";

/* 150 concurrent requests; odd ones buffered, even ones streamed. */
static const char *client_lua =
    "local core = require 'cogos.core'\n"
    "local base = ...\n"
    "local N, done, out = 150, 0, {}\n"
    "for i = 1, N do\n"
    "  core.sched.spawn(function()\n"
    "    local body = string.rep(string.char(97 + i % 26), 70000 + i) .. i\n"
    "    local chunks = {}\n"
    "    local on_data = i % 2 == 0 and function(c) chunks[#chunks + 1] = c end or nil\n"
    "    local res, err = core.http.request{url = base .. '/echo', body = body, on_data = on_data}\n"
    "    local got = res and (on_data and table.concat(chunks) or res.body)\n"
    "    out[i] = {ok = res ~= nil and res.status == 200 and got == body, err = err}\n"
    "    done = done + 1\n"
    "    if done == N then core.loop.stop() end\n"
    "  end)\n"
    "end\n"
    "local timer = core.loop.timer(30000, 0, function() core.loop.stop() end)\n"
    "core.loop.run()\n"
    "timer:stop()\n"
    "check(done == N, 'every request ended (' .. done .. ' of ' .. N .. ')')\n"
    "for i = 1, N do\n"
    "  if out[i] then check(out[i].ok, 'request ' .. i .. ': ' .. tostring(out[i].err)) end\n"
    "end\n";

static int count_sockets (void) {
  DIR *d = opendir("/proc/self/fd");
  if (d == NULL) return -1;
  int n = 0;
  struct dirent *e;
  char path[300], target[64];
  while ((e = readdir(d)) != NULL) {
    snprintf(path, sizeof path, "/proc/self/fd/%s", e->d_name);
    ssize_t len = readlink(path, target, sizeof target - 1);
    if (len > 0) {
      target[len] = '\0';
      if (strncmp(target, "socket:", 7) == 0) n++;
    }
  }
  closedir(d);
  return n;
}

TEST(test_crowd) {
  char script[] = "/tmp/cogos-test-http-XXXXXX";
  int fd = mkstemp(script);
  CHECK(fd >= 0);
  if (fd < 0) return;
  CHECK(write(fd, server_js, strlen(server_js)) == (ssize_t)strlen(server_js));
  close(fd);
  char cmd[256];
  snprintf(cmd, sizeof cmd, "echo $$; exec node %s", script);
  FILE *srv = popen(cmd, "r");
  char line[64] = "";
  int pid = 0, port = 0;
  if (srv && fgets(line, sizeof line, srv)) pid = atoi(line);
  if (srv && fgets(line, sizeof line, srv)) sscanf(line, "listening %d", &port);
  unlink(script);
  CHECK(port > 0);
  if (port <= 0) {
    fprintf(stderr, "FAIL test_crowd: the node echo server did not start (is node installed?)\n");
    if (pid > 0) kill(pid, SIGTERM);
    if (srv) pclose(srv);
    return;
  }

  int sockets_before = count_sockets();
  lua_State *L = host_new(host_root());
  CHECK(L != NULL);
  lua_pushcfunction(L, unit_lua_check);
  lua_setglobal(L, "check");
  char base[64];
  snprintf(base, sizeof base, "http://127.0.0.1:%d", port);
  if (luaL_loadstring(L, client_lua) != LUA_OK || (lua_pushstring(L, base), host_pcall(L, 1, 0)) != LUA_OK) {
    unit_failed++;
    fprintf(stderr, "FAIL test_crowd: %s\n", lua_tostring(L, -1));
  }
  /* curl closes the oldest idle connection past 64 as each transfer ends (its
   * multi handle holds 2 more sockets: the wake-up pair) */
  int idle = count_sockets() - sockets_before;
  CHECK(idle >= 1 && idle <= 64 + 2);
  if (idle > 64 + 2) fprintf(stderr, "  %d idle connections stayed open\n", idle);
  lua_close(L);
  loop_close();
  kill(pid, SIGTERM);
  pclose(srv);
}

int main (void) {
  signal(SIGPIPE, SIG_IGN);
  RUN(test_crowd);
  return unit_report();
}
