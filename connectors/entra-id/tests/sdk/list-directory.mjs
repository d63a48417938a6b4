// Lists every user of the fake Microsoft Graph, and every member of one
// group, with Microsoft's official Graph JavaScript client
// (@microsoft/microsoft-graph-client) and its PageIterator, and prints
// what it saw as JSON.
//
// The client only speaks HTTPS to Graph: it attaches the bearer token only
// to https:// URLs of Graph's hosts or of the `customHosts` it is given, and
// it only parses absolute https:// next links
// (lib/src/middleware/AuthenticationHandler.js, GraphRequest.parsePath).
// So this script puts a TLS front on the fake's plain HTTP listener: the
// fake is started with `https://127.0.0.1:<port>` as its public base (its
// next and delta links point there), and the certificate comes from the
// test (trusted through NODE_EXTRA_CA_CERTS).
//
// usage: node list-directory.mjs <fake http origin> <https port> <cert.pem>
//        <key.pem> <token> <$top> <group id>
import { readFileSync } from 'node:fs';
import http from 'node:http';
import https from 'node:https';
import { Client, PageIterator } from '@microsoft/microsoft-graph-client';

const [origin, port, certFile, keyFile, token, top, groupId] = process.argv.slice(2);
if (!groupId) {
  console.error('usage: node list-directory.mjs <origin> <httpsPort> <cert> <key> <token> <top> <groupId>');
  process.exit(2);
}

// Requests per path, as the front saw them.
const requests = {};
const upstream = new URL(origin);
const front = https.createServer(
  { cert: readFileSync(certFile), key: readFileSync(keyFile) },
  (req, res) => {
    const path = req.url.split('?')[0];
    requests[path] = (requests[path] ?? 0) + 1;
    const headers = { ...req.headers, host: upstream.host };
    const up = http.request(
      { host: upstream.hostname, port: upstream.port, method: req.method, path: req.url, headers },
      (r) => {
        res.writeHead(r.statusCode, r.headers);
        r.pipe(res);
      },
    );
    up.on('error', (e) => {
      res.writeHead(502);
      res.end(String(e));
    });
    req.pipe(up);
  },
);
await new Promise((ok) => front.listen(Number(port), '127.0.0.1', ok));

const client = Client.init({
  authProvider: (done) => done(null, token),
  baseUrl: `https://127.0.0.1:${port}/entra-id`,
  defaultVersion: 'v1.0',
  customHosts: new Set(['127.0.0.1']),
});

/** Every item of a collection, to the end, through the SDK's PageIterator. */
async function all(path, select) {
  const first = await client.api(path).select(select).top(Number(top)).get();
  const ids = [];
  const it = new PageIterator(client, first, (item) => {
    ids.push(item.id);
    return true;
  });
  await it.iterate();
  if (!it.isComplete()) {
    throw new Error(`${path}: the PageIterator stopped before the end`);
  }
  return ids;
}

let out;
try {
  const users = await all('/users', ['id', 'displayName', 'userPrincipalName']);
  const members = await all(`/groups/${groupId}/members`, ['id']);
  out = { users, members, requests };
} finally {
  front.close();
}
console.log(JSON.stringify(out));
