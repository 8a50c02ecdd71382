#!/usr/bin/env node
// slow_llm.js — a slow fake Anthropic Messages endpoint for the executor bench
// (Node 20, no dependencies).
//
//   node tests/bench/slow_llm.js [--delay-ms 5000] [--ttl 600]
//
// Prints "listening <port>" when ready (127.0.0.1). Every POST .../v1/messages is
// answered after --delay-ms with a one-text-block reply ("ok"), as server-sent
// events when the request asks to stream, else as JSON. A large listen backlog
// lets thousands of clients connect at once. Exits on SIGTERM or after --ttl s.
'use strict';

const http = require('node:http');

const opts = { delay: 5000, ttl: 600 };
for (let i = 2; i < process.argv.length; i += 2) {
  const [a, v] = [process.argv[i], Number(process.argv[i + 1])];
  if (a === '--delay-ms') opts.delay = v;
  else if (a === '--ttl') opts.ttl = v;
  else { process.stderr.write(`slow_llm: unknown argument ${a}\n`); process.exit(2); }
}

let served = 0;
let open = 0;
let peak = 0;

function reply(res, stream) {
  const usage = { input_tokens: 50, output_tokens: 2 };
  if (!stream) {
    const body = JSON.stringify({ id: `msg_${served}`, type: 'message', role: 'assistant', model: 'slow',
      content: [{ type: 'text', text: 'ok' }], stop_reason: 'end_turn', usage });
    res.writeHead(200, { 'content-type': 'application/json' });
    res.end(body);
    return;
  }
  res.writeHead(200, { 'content-type': 'text/event-stream' });
  const ev = (name, data) => `event: ${name}\ndata: ${JSON.stringify(data)}\n\n`;
  res.end(
    ev('message_start', { type: 'message_start', message: { id: `msg_${served}`, type: 'message',
      role: 'assistant', model: 'slow', content: [], stop_reason: null,
      usage: { input_tokens: usage.input_tokens, output_tokens: 0 } } }) +
    ev('content_block_start', { type: 'content_block_start', index: 0, content_block: { type: 'text', text: '' } }) +
    ev('content_block_delta', { type: 'content_block_delta', index: 0, delta: { type: 'text_delta', text: 'ok' } }) +
    ev('content_block_stop', { type: 'content_block_stop', index: 0 }) +
    ev('message_delta', { type: 'message_delta', delta: { stop_reason: 'end_turn' },
      usage: { output_tokens: usage.output_tokens } }) +
    ev('message_stop', { type: 'message_stop' }));
}

const server = http.createServer((req, res) => {
  const chunks = [];
  req.on('data', (c) => chunks.push(c));
  req.on('end', () => {
    open++;
    if (open > peak) peak = open;
    let stream = false;
    try { stream = JSON.parse(Buffer.concat(chunks).toString('utf8')).stream === true; } catch (e) { /* JSON reply */ }
    setTimeout(() => {
      served++;
      open--;
      reply(res, stream);
    }, opts.delay);
  });
});
server.keepAliveTimeout = 60000;
server.headersTimeout = 0;
server.requestTimeout = 0;
server.maxRequestsPerSocket = 0;
server.listen({ port: 0, host: '127.0.0.1', backlog: 65535 }, () => {
  process.stdout.write(`listening ${server.address().port}\n`);
});

function stop() {
  process.stderr.write(`slow_llm: served ${served}, peak ${peak} waiting at once\n`);
  process.exit(0);
}
process.on('SIGTERM', stop);
process.on('SIGINT', stop);
setTimeout(stop, opts.ttl * 1000).unref();
