// A tiny web server on loopback for the capability tests (web_fetch, http):
//   node tests/e2e/tiny_web.js  -> prints "listening <port>"
// Routes: /page (HTML), /in (302 to /page), /out (302 to another host),
// /loop (302 to itself), /big (6 MB), /echo (the request as JSON).
const http = require('http');
const server = http.createServer((req, res) => {
  let body = '';
  req.on('data', (c) => { body += c; });
  req.on('end', () => {
    const url = req.url;
    if (url === '/page') {
      res.writeHead(200, { 'content-type': 'text/html' });
      res.end('<html><head><title>Tiny &amp; Page</title><style>p{}</style></head>' +
        '<body><script>var x = 1;</script><h1>Hello</h1><p>World &lt;3</p></body></html>');
    } else if (url === '/in') {
      res.writeHead(302, { location: '/page' });
      res.end();
    } else if (url === '/out') {
      res.writeHead(302, { location: 'http://outside.invalid/page' });
      res.end();
    } else if (url === '/loop') {
      res.writeHead(302, { location: '/loop' });
      res.end();
    } else if (url === '/big') {
      res.writeHead(200, { 'content-type': 'text/plain' });
      res.end('x'.repeat(6 * 1024 * 1024));
    } else if (url === '/echo') {
      res.writeHead(200, { 'content-type': 'application/json', 'x-tiny': 'yes' });
      res.end(JSON.stringify({ method: req.method, body, header: req.headers['x-test'] || null }));
    } else {
      res.writeHead(404);
      res.end('not found');
    }
  });
});
server.listen(0, '127.0.0.1', () => {
  console.log('listening ' + server.address().port);
});
