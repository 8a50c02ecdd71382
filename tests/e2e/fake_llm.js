#!/usr/bin/env node
// fake_llm.js — a fake LLM server for end-to-end tests (Node 20, no dependencies).
//
//   node tests/e2e/fake_llm.js --script FILE [--port 0] [--key KEY] [--log FILE] [--ttl SECONDS]
//
// Prints exactly one line "listening <port>" on stdout when ready; binds 127.0.0.1.
// Serves, from one script (the scripted provider's format: {"turns": [turn, ...]}):
//   POST /v1/messages                    Anthropic Messages API
//   POST <any prefix>/chat/completions   OpenAI chat completions
// The turn replayed is chosen by the number of assistant messages in the request
// (plus one), so concurrent conversations each follow their own sequence; past the
// end of the script it answers a "(script ended)" text turn.
// A turn {"error": {"status": 429, "retry_after": 0, "message": "..."}} answers that
// error the first time its position is requested, then the turn's content.
// "stream": true is answered with the provider's server-sent events.
// --key: requests without the right key get 401 in the provider's error shape.
// --log: every request is appended as one JSON line {path, auth, body} where auth
// lists the auth header names present (never their values).
// Exits on SIGTERM/SIGINT, when its parent goes away, or after --ttl seconds (600).
'use strict';

const http = require('node:http');
const fs = require('node:fs');

const MAX_BODY = 16 * 1024 * 1024;

function parseArgs(argv) {
  const opts = { port: 0, ttl: 600 };
  for (let i = 0; i < argv.length; i++) {
    const a = argv[i];
    const v = argv[i + 1];
    if (a === '--script') { opts.script = v; i++; }
    else if (a === '--port') { opts.port = Number(v); i++; }
    else if (a === '--key') { opts.key = v; i++; }
    else if (a === '--log') { opts.log = v; i++; }
    else if (a === '--ttl') { opts.ttl = Number(v); i++; }
    else { fail(`unknown argument ${a}`); }
  }
  if (!opts.script) fail('--script FILE is required');
  if (!Number.isInteger(opts.port) || opts.port < 0) fail('bad --port');
  return opts;
}

function fail(msg) {
  process.stderr.write(`fake_llm: ${msg}\n`);
  process.exit(2);
}

const opts = parseArgs(process.argv.slice(2));
let script;
try {
  script = JSON.parse(fs.readFileSync(opts.script, 'utf8'));
} catch (e) {
  fail(`cannot read script ${opts.script}: ${e.message}`);
}
const turns = Array.isArray(script) ? script : (script.turns || []);
const errorServed = new Set(); // positions whose one-off error was answered
let seq = 0;

// ---- script turns ----

function estimate(s) {
  return Math.ceil(s.length / 4);
}

// The turn at this conversation position, normalised: content blocks with ids,
// stop_reason and usage (estimated like the scripted provider when absent).
function turnFor(pos, req) {
  const t = turns[pos - 1];
  let content;
  let stop;
  let usage;
  if (!t) {
    content = [{ type: 'text', text: '(script ended)' }];
    stop = 'end_turn';
  } else {
    content = (t.content || []).map((b, i) => {
      const c = { ...b };
      if (c.type === 'tool_use') {
        if (!c.id) c.id = `toolu_scripted_${pos}_${i + 1}`;
        if (!c.input) c.input = {};
      }
      return c;
    });
    stop = t.stop_reason || (content.some((b) => b.type === 'tool_use') ? 'tool_use' : 'end_turn');
    usage = t.usage;
  }
  if (!usage) {
    const input = (typeof req.system === 'string' ? req.system : JSON.stringify(req.system || ''))
      + JSON.stringify(req.messages || []);
    usage = { input_tokens: estimate(input), output_tokens: estimate(JSON.stringify(content)) };
  }
  return { content, stop_reason: stop, usage };
}

function position(messages) {
  let n = 0;
  for (const m of messages || []) if (m && m.role === 'assistant') n++;
  return n + 1;
}

// Splits s into up to n pieces (at least one) so deltas arrive fragmented.
function pieces(s, n) {
  if (s.length === 0) return [''];
  const size = Math.max(1, Math.ceil(s.length / n));
  const out = [];
  for (let i = 0; i < s.length; i += size) out.push(s.slice(i, i + size));
  return out;
}

// ---- responses ----

function sendJSON(res, status, obj, headers) {
  const body = JSON.stringify(obj);
  res.writeHead(status, { 'content-type': 'application/json', ...(headers || {}) });
  res.end(body);
}

function sse(res) {
  res.writeHead(200, {
    'content-type': 'text/event-stream',
    'cache-control': 'no-cache',
  });
}

const anthropicErrorTypes = {
  400: 'invalid_request_error', 401: 'authentication_error', 403: 'permission_error',
  404: 'not_found_error', 413: 'request_too_large', 429: 'rate_limit_error',
  500: 'api_error', 529: 'overloaded_error',
};

function anthropicError(res, status, message, headers) {
  sendJSON(res, status, {
    type: 'error',
    error: { type: anthropicErrorTypes[status] || 'api_error', message },
  }, headers);
}

function openaiError(res, status, message, headers) {
  const type = status === 401 ? 'invalid_request_error'
    : status === 429 ? 'requests' : status >= 500 ? 'server_error' : 'invalid_request_error';
  const code = status === 401 ? 'invalid_api_key' : status === 429 ? 'rate_limit_exceeded' : null;
  sendJSON(res, status, { error: { message, type, param: null, code } }, headers);
}

function anthropicReply(res, req, turn, model) {
  const id = `msg_fake_${++seq}`;
  if (!req.stream) {
    sendJSON(res, 200, {
      id, type: 'message', role: 'assistant', model, content: turn.content,
      stop_reason: turn.stop_reason, stop_sequence: null, usage: turn.usage,
    });
    return;
  }
  sse(res);
  const ev = (type, data) => res.write(`event: ${type}\ndata: ${JSON.stringify({ type, ...data })}\n\n`);
  ev('message_start', {
    message: {
      id, type: 'message', role: 'assistant', model, content: [], stop_reason: null,
      stop_sequence: null, usage: { input_tokens: turn.usage.input_tokens, output_tokens: 1 },
    },
  });
  ev('ping', {});
  turn.content.forEach((b, index) => {
    if (b.type === 'tool_use') {
      ev('content_block_start', { index, content_block: { type: 'tool_use', id: b.id, name: b.name, input: {} } });
      for (const p of pieces(JSON.stringify(b.input), 3)) {
        ev('content_block_delta', { index, delta: { type: 'input_json_delta', partial_json: p } });
      }
    } else {
      ev('content_block_start', { index, content_block: { type: 'text', text: '' } });
      for (const p of pieces(b.text || '', 3)) {
        ev('content_block_delta', { index, delta: { type: 'text_delta', text: p } });
      }
    }
    ev('content_block_stop', { index });
  });
  ev('message_delta', {
    delta: { stop_reason: turn.stop_reason, stop_sequence: null },
    usage: { output_tokens: turn.usage.output_tokens },
  });
  ev('message_stop', {});
  res.end();
}

const finishReasons = { end_turn: 'stop', tool_use: 'tool_calls', max_tokens: 'length' };

function openaiReply(res, req, turn, model) {
  const id = `chatcmpl-fake${++seq}`;
  const created = Math.floor(Date.now() / 1000);
  const text = turn.content.filter((b) => b.type === 'text').map((b) => b.text).join('');
  const calls = turn.content.filter((b) => b.type === 'tool_use').map((b) => ({
    id: b.id, type: 'function', function: { name: b.name, arguments: JSON.stringify(b.input) },
  }));
  const finish = finishReasons[turn.stop_reason] || 'stop';
  const usage = {
    prompt_tokens: turn.usage.input_tokens,
    completion_tokens: turn.usage.output_tokens,
    total_tokens: turn.usage.input_tokens + turn.usage.output_tokens,
  };
  if (!req.stream) {
    const message = { role: 'assistant', content: text === '' ? null : text, refusal: null };
    if (calls.length > 0) message.tool_calls = calls;
    sendJSON(res, 200, {
      id, object: 'chat.completion', created, model,
      choices: [{ index: 0, message, logprobs: null, finish_reason: finish }],
      usage,
    });
    return;
  }
  const includeUsage = !!(req.stream_options && req.stream_options.include_usage);
  sse(res);
  const chunk = (delta, finishReason) => {
    const c = {
      id, object: 'chat.completion.chunk', created, model,
      choices: [{ index: 0, delta, logprobs: null, finish_reason: finishReason }],
    };
    if (includeUsage) c.usage = null;
    res.write(`data: ${JSON.stringify(c)}\n\n`);
  };
  chunk({ role: 'assistant', content: '' }, null);
  if (text !== '') for (const p of pieces(text, 3)) chunk({ content: p }, null);
  calls.forEach((c, index) => {
    chunk({ tool_calls: [{ index, id: c.id, type: 'function', function: { name: c.function.name, arguments: '' } }] }, null);
    for (const p of pieces(c.function.arguments, 3)) {
      chunk({ tool_calls: [{ index, function: { arguments: p } }] }, null);
    }
  });
  chunk({}, finish);
  if (includeUsage) {
    res.write(`data: ${JSON.stringify({ id, object: 'chat.completion.chunk', created, model, choices: [], usage })}\n\n`);
  }
  res.write('data: [DONE]\n\n');
  res.end();
}

// ---- requests ----

function logRequest(path, headers, body) {
  if (!opts.log) return;
  const auth = ['authorization', 'x-api-key'].filter((h) => headers[h] !== undefined);
  fs.appendFileSync(opts.log, `${JSON.stringify({ path, auth, body })}\n`);
}

function handle(req, res, raw) {
  const path = req.url.split('?')[0];
  const kind = path === '/v1/messages' ? 'anthropic'
    : path.endsWith('/chat/completions') ? 'openai' : null;
  const error = kind === 'openai' ? openaiError : anthropicError;
  let body;
  try {
    body = JSON.parse(raw);
  } catch (e) {
    body = undefined;
  }
  logRequest(path, req.headers, body === undefined ? raw : body);
  if (req.method !== 'POST' || !kind) {
    error(res, 404, `no route for ${req.method} ${path}`);
    return;
  }
  if (body === undefined) {
    error(res, 400, 'request body is not JSON');
    return;
  }
  if (opts.key !== undefined) {
    const ok = kind === 'anthropic'
      ? req.headers['x-api-key'] === opts.key
      : req.headers.authorization === `Bearer ${opts.key}`;
    if (!ok) {
      if (kind === 'anthropic') error(res, 401, 'invalid x-api-key');
      else error(res, 401, 'Incorrect API key provided.');
      return;
    }
  }
  if (!body || typeof body !== 'object' || !Array.isArray(body.messages)) {
    error(res, 400, 'messages: field required');
    return;
  }
  const pos = position(body.messages);
  const t = turns[pos - 1];
  if (t && t.error && !errorServed.has(pos)) {
    errorServed.add(pos);
    const status = t.error.status || 500;
    const headers = t.error.retry_after !== undefined ? { 'retry-after': String(t.error.retry_after) } : {};
    error(res, status, t.error.message || `scripted error ${status}`, headers);
    return;
  }
  let messages = body.messages;
  if (kind === 'openai') {
    // The system message is not part of the conversation position or the estimate's messages.
    messages = messages.filter((m) => m.role !== 'system');
    const sys = body.messages.filter((m) => m.role === 'system').map((m) => m.content).join('\n');
    body = { ...body, system: sys, messages };
  }
  const turn = turnFor(pos, body);
  const model = body.model || 'fake-model';
  if (kind === 'anthropic') anthropicReply(res, body, turn, model);
  else openaiReply(res, body, turn, model);
}

const server = http.createServer((req, res) => {
  const chunks = [];
  let size = 0;
  let tooLarge = false;
  req.on('data', (c) => {
    size += c.length;
    if (size > MAX_BODY) {
      tooLarge = true;
      req.destroy();
      return;
    }
    chunks.push(c);
  });
  req.on('end', () => {
    if (tooLarge) return;
    try {
      handle(req, res, Buffer.concat(chunks).toString('utf8'));
    } catch (e) {
      if (!res.headersSent) sendJSON(res, 500, { error: { message: `fake_llm: ${e.message}` } });
      else res.end();
    }
  });
});
server.keepAliveTimeout = 5000;
server.requestTimeout = 30000;

function stop() {
  server.close();
  server.closeAllConnections();
  process.exit(0);
}
process.on('SIGTERM', stop);
process.on('SIGINT', stop);

// Never outlive the test that started us.
const parent = process.ppid;
const watchdog = setInterval(() => {
  if (process.ppid !== parent) stop();
}, 500);
watchdog.unref();
if (opts.ttl > 0) setTimeout(stop, opts.ttl * 1000).unref();

server.listen(opts.port, '127.0.0.1', () => {
  process.stdout.write(`listening ${server.address().port}\n`);
});
