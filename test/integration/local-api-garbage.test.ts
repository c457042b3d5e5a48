// The real-socket check beside the in-process fuzzing of the local API
// (docs/fuzzing.md, target local-api): a running `ferry serve` gets garbage
// on its Unix socket (bodies that are not JSON or too large, arguments of the
// wrong shape, unknown operations and methods, deep nesting, bytes that are
// not HTTP, a request cut mid-body), answers each one it can with one error
// line of a stable code (never INTERNAL), and is still there afterwards:
// `ferry status` works, and the process never exited.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import http from 'node:http';
import net from 'node:net';
import { ERRORS } from '../../src/core/errors.ts';
import { createSite } from '../harness/index.ts';

function post(socket: string, path: string, body: Buffer | string, method = 'POST'): Promise<{ status: number; lines: any[] }> {
  return new Promise((resolve, reject) => {
    const req = http.request({ socketPath: socket, agent: false, method, path, headers: { 'content-type': 'application/json', 'content-length': Buffer.byteLength(body) } }, (res) => {
      let text = '';
      res.setEncoding('utf8');
      res.on('data', (d: string) => (text += d));
      res.on('end', () => resolve({ status: res.statusCode ?? 0, lines: text.split('\n').filter(Boolean).map((l) => JSON.parse(l)) }));
      res.on('error', reject);
    });
    req.on('error', reject);
    req.end(body);
  });
}

/** Bytes written straight to the socket, then whatever comes back until the server closes or 2 s pass. */
function raw(socket: string, bytes: Buffer, end = true): Promise<string> {
  return new Promise((resolve) => {
    const c = net.connect(socket);
    let text = '';
    c.on('data', (d) => (text += d.toString('latin1')));
    c.on('error', () => resolve(text));
    c.on('close', () => resolve(text));
    c.write(bytes, () => {
      if (end) c.end();
      else c.destroy(); // gone mid-request
    });
    setTimeout(() => c.destroy(), 2000).unref();
  });
}

test('garbage on the local socket gets clear errors and the daemon survives it', async () => {
  const site = await createSite('garbage');
  try {
    const d = await site.start();
    const cases: Array<[string, Buffer | string, RegExp, string?]> = [
      ['/local/status', 'not json', /PROTOCOL/],
      ['/local/status', '{"a":', /PROTOCOL/],
      ['/local/status', Buffer.alloc(1024 * 1024 + 10, 0x20), /PROTOCOL/],
      ['/local/nope', '{}', /USAGE/],
      ['/local/../../etc/passwd', '{}', /USAGE/],
      ['/local/status', '{}', /USAGE/, 'GET'],
      ['/local/volume.create', '{"name": 5}', /USAGE/],
      ['/local/volume.create', '{"name": "v", "members": ""}', /USAGE/],
      ['/local/volume.create', '{"name": "v", "members": ["/"]}', /MEMBER_INVALID|USAGE/],
      ['/local/snapshot.delete', '{"volume": "x", "snapshots": 8}', /USAGE/],
      ['/local/restore', '{"volume": [], "snapshot": {}}', /USAGE/],
      ['/local/mirror.create', '{"volume": "x", "to": "y", "scheduleS": -1}', /USAGE/],
      ['/local/site.add', '{"name": "p", "url": "ftp://x", "id": "y"}', /USAGE|IDENTITY/],
      // deep nesting parses without a stack overflow; an array is not an argument object
      ['/local/status', `${'['.repeat(300_000)}${']'.repeat(300_000)}`, /USAGE/],
      ['/local/status', `{"a":${'['.repeat(300_000)}${']'.repeat(300_000)}}`, /result/],
      ['/local/status', '\u0000\ud800', /PROTOCOL/],
    ];
    for (const [path, body, want, method] of cases) {
      const r = await post(d.socket, path, body, method).catch((err: Error) => {
        throw new Error(`${path} ${String(body).slice(0, 60)}: ${err.message}`);
      });
      const last = r.lines.at(-1);
      assert.ok(last, `${path}: no answer line`);
      const got = last.error ? last.error.code : 'result';
      assert.match(got, want, `${path} ${String(body).slice(0, 60)}: ${JSON.stringify(last).slice(0, 300)}`);
      if (last.error) assert.ok(Object.hasOwn(ERRORS, last.error.code) && last.error.code !== 'INTERNAL', JSON.stringify(last.error).slice(0, 300));
    }
    // not HTTP at all, and a request cut off mid-body
    assert.match(await raw(d.socket, Buffer.from('\x00\x01\x02 garbage\r\n\r\n')), /^HTTP\/1\.1 400/);
    await raw(d.socket, Buffer.from('POST /local/status HTTP/1.1\r\nHost: x\r\nContent-Length: 1000\r\n\r\n{"a'), false);

    const status = await site.status();
    assert.equal(status.site.name, 'garbage');
    assert.equal(site.proc?.exitCode, null, 'the daemon exited');
  } finally {
    await site.cleanup();
  }
});
