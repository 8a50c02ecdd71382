#!/usr/bin/env node
// fake_llm.js — a fake LLM server for end-to-end tests (Node 20, no dependencies).
//
//   node tests/e2e/fake_llm.js --script FILE [--port 0] [--key KEY] [--log FILE] [--ttl SECONDS]
//
// Prints exactly one line "listening <port>" on stdout when ready; binds 127.0.0.1.
// Serves, from one script (the scripted provider's format: {"turns": [turn, ...]}):
//   POST /v1/messages                    Anthropic Messages API
//   POST <any prefix>/chat/completions   OpenAI chat completions
//   POST /model/<modelId>/converse       Bedrock Converse
//   POST /model/<modelId>/converse-stream  Bedrock ConverseStream (AWS event-stream
//                                        binary framing with CRC32s)
// Bedrock requests must carry an AWS4-HMAC-SHA256 Authorization header; with --key
// the signature is verified with KEY as the secret access key (canonical request
// per the SigV4 rules for services other than S3: each path segment encoded again).
// The turn replayed is chosen by the number of assistant messages in the request
// (plus one), so concurrent conversations each follow their own sequence; past the
// end of the script it answers a "(script ended)" text turn.
// A turn {"error": {"status": 429, "retry_after": 0, "message": "...", "times": N}}
// answers that error the first N times (default 1) its position is requested,
// then the turn's content.
// "stream": true is answered with the provider's server-sent events.
// A turn {"delay_ms": N} is answered after N ms.
// A turn {"stream_error": {"after": N, "message": "...", "type": "..."}} is streamed
// up to N deltas, then ends with the provider's mid-stream error (once per position
// and wire format).
// --key: requests without the right key get 401 in the provider's error shape.
// --log: every request is appended as one JSON line {path, auth, body} where auth
// lists the auth header names present (never their values; for Bedrock also
// x-amz-security-token and "sigv4:<region>/<service>" from the credential scope).
// Exits on SIGTERM/SIGINT, when its parent goes away, or after --ttl seconds (600).
'use strict';

const http = require('node:http');
const fs = require('node:fs');
const crypto = require('node:crypto');

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
const errorServed = new Map(); // position -> how many times its error was answered
const streamErrorServed = new Set(); // "kind:position" whose mid-stream error was streamed
let seq = 0;

// ---- script turns ----

function estimate(s) {
  return Math.ceil(s.length / 4);
}

// The turn at this conversation position, normalised: content blocks with ids,
// stop_reason and usage (estimated like the scripted provider when absent).
function turnFor(pos, req, kind) {
  const t = turns[pos - 1];
  let content;
  let stop;
  let usage;
  let streamError;
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
    if (t.stream_error && req.streaming && !streamErrorServed.has(`${kind}:${pos}`)) {
      streamErrorServed.add(`${kind}:${pos}`);
      streamError = t.stream_error;
    }
  }
  if (!usage) {
    const input = (typeof req.system === 'string' ? req.system : JSON.stringify(req.system || ''))
      + JSON.stringify(req.messages || []);
    usage = { input_tokens: estimate(input), output_tokens: estimate(JSON.stringify(content)) };
  }
  return { content, stop_reason: stop, usage, streamError };
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

// For a turn with a stream error: returns cut(final) that is true (after calling
// fail once) when the error is due: after `after` deltas, or at the end.
function streamCutter(turn, fail) {
  let n = 0;
  let done = false;
  return (final) => {
    if (!turn.streamError || done) return done;
    if (final || n >= (turn.streamError.after || 0)) {
      done = true;
      fail();
      return true;
    }
    n++;
    return false;
  };
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
  const cut = streamCutter(turn, () => {
    const e = turn.streamError;
    ev('error', { error: { type: e.type || 'overloaded_error', message: e.message || 'Overloaded' } });
    res.end();
  });
  for (const [index, b] of turn.content.entries()) {
    if (b.type === 'tool_use') {
      ev('content_block_start', { index, content_block: { type: 'tool_use', id: b.id, name: b.name, input: {} } });
      for (const p of pieces(JSON.stringify(b.input), 3)) {
        if (cut()) return;
        ev('content_block_delta', { index, delta: { type: 'input_json_delta', partial_json: p } });
      }
    } else {
      ev('content_block_start', { index, content_block: { type: 'text', text: '' } });
      for (const p of pieces(b.text || '', 3)) {
        if (cut()) return;
        ev('content_block_delta', { index, delta: { type: 'text_delta', text: p } });
      }
    }
    ev('content_block_stop', { index });
  }
  if (cut(true)) return;
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
  const cut = streamCutter(turn, () => {
    const e = turn.streamError;
    res.write(`data: ${JSON.stringify({ error: { message: e.message || 'The server had an error',
      type: e.type || 'server_error', param: null, code: null } })}\n\n`);
    res.end();
  });
  if (text !== '') {
    for (const p of pieces(text, 3)) {
      if (cut()) return;
      chunk({ content: p }, null);
    }
  }
  for (const [index, c] of calls.entries()) {
    chunk({ tool_calls: [{ index, id: c.id, type: 'function', function: { name: c.function.name, arguments: '' } }] }, null);
    for (const p of pieces(c.function.arguments, 3)) {
      if (cut()) return;
      chunk({ tool_calls: [{ index, function: { arguments: p } }] }, null);
    }
  }
  if (cut(true)) return;
  chunk({}, finish);
  if (includeUsage) {
    res.write(`data: ${JSON.stringify({ id, object: 'chat.completion.chunk', created, model, choices: [], usage })}\n\n`);
  }
  res.write('data: [DONE]\n\n');
  res.end();
}

// ---- Bedrock: SigV4 and the AWS event-stream framing ----

const CRC_TABLE = (() => {
  const t = new Uint32Array(256);
  for (let n = 0; n < 256; n++) {
    let c = n;
    for (let k = 0; k < 8; k++) c = c & 1 ? 0xedb88320 ^ (c >>> 1) : c >>> 1;
    t[n] = c >>> 0;
  }
  return t;
})();

function crc32(buf) {
  let c = 0xffffffff;
  for (const b of buf) c = CRC_TABLE[(c ^ b) & 0xff] ^ (c >>> 8);
  return (c ^ 0xffffffff) >>> 0;
}

// RFC 3986 encoding of one path segment, as the SigV4 canonical URI wants it.
function awsEncode(s) {
  return encodeURIComponent(s).replace(/[!'()*]/g, (c) => `%${c.charCodeAt(0).toString(16).toUpperCase()}`);
}

const sha256 = (data) => crypto.createHash('sha256').update(data).digest('hex');
const hmac = (key, data) => crypto.createHmac('sha256', key).update(data).digest();

// Returns {scope} when the request is signed (and, with a secret, verifies),
// else {error}.
function sigv4Check(req, rawBody, secret) {
  const auth = req.headers.authorization || '';
  const m = /^AWS4-HMAC-SHA256 Credential=([^/,]+)\/(\d{8})\/([^/,]+)\/([^/,]+)\/aws4_request, ?SignedHeaders=([a-z0-9;-]+), ?Signature=([0-9a-f]{64})$/.exec(auth);
  if (!m) return { error: 'Missing Authentication Token', type: 'MissingAuthenticationTokenException' };
  const [, , date, region, service, signed, signature] = m;
  const scope = `${region}/${service}`;
  if (secret === undefined) return { scope };
  const amzDate = req.headers['x-amz-date'] || '';
  const [rawPath, rawQuery = ''] = req.url.split('?');
  const canonUri = rawPath.split('/').map(awsEncode).join('/');
  const canonQuery = rawQuery === '' ? '' : rawQuery.split('&').sort().join('&');
  const names = signed.split(';');
  const canonHeaders = names.map((h) => `${h}:${String(req.headers[h] || '').trim().replace(/\s+/g, ' ')}\n`).join('');
  const creq = [req.method, canonUri, canonQuery, canonHeaders, signed, sha256(rawBody)].join('\n');
  const sts = ['AWS4-HMAC-SHA256', amzDate, `${date}/${region}/${service}/aws4_request`, sha256(creq)].join('\n');
  let k = hmac(`AWS4${secret}`, date);
  k = hmac(k, region);
  k = hmac(k, service);
  k = hmac(k, 'aws4_request');
  const want = crypto.createHmac('sha256', k).update(sts).digest('hex');
  if (want !== signature) {
    return {
      error: 'The request signature we calculated does not match the signature you provided.',
      type: 'InvalidSignatureException',
    };
  }
  return { scope };
}

function esHeader(name, value) {
  const n = Buffer.from(name);
  const v = Buffer.from(value);
  const b = Buffer.alloc(4 + n.length + v.length);
  b[0] = n.length;
  n.copy(b, 1);
  b[1 + n.length] = 7; // string
  b.writeUInt16BE(v.length, 2 + n.length);
  v.copy(b, 4 + n.length);
  return b;
}

// One event-stream message: prelude (total and headers length, CRC32 of both),
// headers, payload, CRC32 of everything before.
function esMessage(headers, payload) {
  const h = Buffer.concat(Object.entries(headers).map(([k, v]) => esHeader(k, v)));
  const p = Buffer.from(payload);
  const prelude = Buffer.alloc(12);
  prelude.writeUInt32BE(12 + h.length + p.length + 4, 0);
  prelude.writeUInt32BE(h.length, 4);
  prelude.writeUInt32BE(crc32(prelude.subarray(0, 8)), 8);
  const head = Buffer.concat([prelude, h, p]);
  const crc = Buffer.alloc(4);
  crc.writeUInt32BE(crc32(head), 0);
  return Buffer.concat([head, crc]);
}

const bedrockErrorTypes = {
  400: 'ValidationException', 403: 'AccessDeniedException', 404: 'ResourceNotFoundException',
  408: 'ModelTimeoutException', 429: 'ThrottlingException', 500: 'InternalServerException',
  503: 'ServiceUnavailableException',
};

function bedrockError(res, status, message, headers, type) {
  const t = type || bedrockErrorTypes[status] || 'InternalServerException';
  sendJSON(res, status, { message }, {
    'x-amzn-errortype': `${t}:http://internal.amazon.com/coral/com.amazon.bedrock/`,
    ...(headers || {}),
  });
}

function bedrockContent(content) {
  return content.map((b) => (b.type === 'tool_use'
    ? { toolUse: { toolUseId: b.id, name: b.name, input: b.input } }
    : { text: b.text || '' }));
}

function bedrockReply(res, req, turn, stream) {
  const usage = {
    inputTokens: turn.usage.input_tokens,
    outputTokens: turn.usage.output_tokens,
    totalTokens: turn.usage.input_tokens + turn.usage.output_tokens,
  };
  if (!stream) {
    sendJSON(res, 200, {
      output: { message: { role: 'assistant', content: bedrockContent(turn.content) } },
      stopReason: turn.stop_reason, usage, metrics: { latencyMs: 12 },
    });
    return;
  }
  res.writeHead(200, { 'content-type': 'application/vnd.amazon.eventstream' });
  let pad = 0;
  const ev = (type, data) => {
    // Real events carry a padding field "p"; frames are written in two pieces.
    const msg = esMessage({ ':event-type': type, ':content-type': 'application/json', ':message-type': 'event' },
      JSON.stringify({ ...data, p: 'abcdefghijklmnopqrstuvwxyz'.slice(0, (pad++ % 26) + 1) }));
    const half = Math.floor(msg.length / 2);
    res.write(msg.subarray(0, half));
    res.write(msg.subarray(half));
  };
  ev('messageStart', { role: 'assistant' });
  const cut = streamCutter(turn, () => {
    const e = turn.streamError;
    res.write(esMessage({ ':exception-type': e.type || 'throttlingException', ':content-type': 'application/json',
      ':message-type': 'exception' }, JSON.stringify({ message: e.message || 'Too many requests' })));
    res.end();
  });
  for (const [i, b] of turn.content.entries()) {
    if (b.type === 'tool_use') {
      ev('contentBlockStart', { contentBlockIndex: i, start: { toolUse: { toolUseId: b.id, name: b.name } } });
      for (const p of pieces(JSON.stringify(b.input), 3)) {
        if (cut()) return;
        ev('contentBlockDelta', { contentBlockIndex: i, delta: { toolUse: { input: p } } });
      }
    } else {
      for (const p of pieces(b.text || '', 3)) {
        if (cut()) return;
        ev('contentBlockDelta', { contentBlockIndex: i, delta: { text: p } });
      }
    }
    ev('contentBlockStop', { contentBlockIndex: i });
  }
  if (cut(true)) return;
  ev('messageStop', { stopReason: turn.stop_reason });
  ev('metadata', { usage, metrics: { latencyMs: 12 } });
  res.end();
}

// ---- requests ----

function logRequest(path, headers, body, extra) {
  if (!opts.log) return;
  const auth = ['authorization', 'x-api-key', 'x-amz-security-token'].filter((h) => headers[h] !== undefined);
  if (extra) auth.push(extra);
  fs.appendFileSync(opts.log, `${JSON.stringify({ path, auth, body })}\n`);
}

function handle(req, res, rawBuf) {
  const raw = rawBuf.toString('utf8');
  const path = req.url.split('?')[0];
  const route = /^\/model\/([^/]+)\/(converse|converse-stream)$/.exec(path);
  const kind = path === '/v1/messages' ? 'anthropic'
    : path.endsWith('/chat/completions') ? 'openai' : route ? 'bedrock' : null;
  const error = kind === 'openai' ? openaiError : kind === 'bedrock' ? bedrockError : anthropicError;
  let sig;
  if (kind === 'bedrock') {
    sig = sigv4Check(req, rawBuf, opts.key);
  }
  let body;
  try {
    body = JSON.parse(raw);
  } catch (e) {
    body = undefined;
  }
  if (!req.delayed) logRequest(path, req.headers, body === undefined ? raw : body, sig && sig.scope && `sigv4:${sig.scope}`);
  if (req.method !== 'POST' || !kind) {
    error(res, 404, `no route for ${req.method} ${path}`);
    return;
  }
  if (body === undefined) {
    error(res, 400, 'request body is not JSON');
    return;
  }
  if (kind === 'bedrock' && sig.error) {
    bedrockError(res, 403, sig.error, {}, sig.type);
    return;
  }
  if (opts.key !== undefined && kind !== 'bedrock') {
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
  if (t && t.error && (errorServed.get(pos) || 0) < (t.error.times || 1)) {
    errorServed.set(pos, (errorServed.get(pos) || 0) + 1);
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
  if (t && t.delay_ms && !req.delayed) {
    req.delayed = true;
    setTimeout(() => handle(req, res, rawBuf), t.delay_ms);
    return;
  }
  const streaming = kind === 'bedrock' ? route[2] === 'converse-stream' : !!body.stream;
  const turn = turnFor(pos, { ...body, streaming }, kind);
  if (kind === 'bedrock') {
    bedrockReply(res, body, turn, route[2] === 'converse-stream');
    return;
  }
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
      handle(req, res, Buffer.concat(chunks));
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
