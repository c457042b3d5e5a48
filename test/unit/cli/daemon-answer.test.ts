// The CLI reads the local daemon's NDJSON answer (src/cli/invoke.ts): a line
// that is not JSON, or an error with a code this ferry does not know (a
// newer daemon, a damaged answer), must reject the command with a clear
// error, not throw inside the socket's data handler (an uncaught exception:
// the command died with a stack trace) or build a FerryError of no code.
// A fake daemon on a Unix socket answers each line below.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import http from 'node:http';
import { mkdirSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { isFerryError } from '../../../src/core/errors.ts';
import { invoke } from '../../../src/cli/invoke.ts';
import { daemonInfoPath } from '../../../src/app/daemon.ts';
import { tempDir } from '../../helpers.ts';

test("a daemon's answer line that is not JSON, or an unknown error code, rejects with PROTOCOL", async () => {
  const tmp = tempDir();
  const home = join(tmp.path, 'home');
  mkdirSync(home);
  const socket = join(tmp.path, 'd.sock');
  let answer = '';
  const server = http.createServer((_req, res) => {
    res.writeHead(200, { 'content-type': 'application/x-ndjson' });
    res.end(answer);
  });
  await new Promise<void>((r) => server.listen(socket, r));
  writeFileSync(daemonInfoPath(home), JSON.stringify({ pid: process.pid, socket, listen: '127.0.0.1:0', port: 0, startedAt: 0 }));
  try {
    for (const [line, what] of [
      ['not json\n', /not JSON/],
      ['{"error": {"code": "__proto__", "message": "x"}}\n', /__proto__/],
      ['{"error": {"code": "NO_SUCH_CODE", "message": "x"}}\n', /NO_SUCH_CODE/],
      ['{"error": "broken"}\n', /neither/],
      ['5\n', /neither/],
    ] as Array<[string, RegExp]>) {
      answer = line;
      await assert.rejects(invoke({ home }, 'status', {}), (e: unknown) => isFerryError(e, 'PROTOCOL') && what.test(e.message), line);
    }
    answer = '{"error": {"code": "VOLUME_NOT_FOUND", "message": "no volume x"}}\n';
    await assert.rejects(invoke({ home }, 'status', {}), (e: unknown) => isFerryError(e, 'VOLUME_NOT_FOUND'));
    answer = '{"progress": {"phase": "sending"}}\n{"result": {"ok": true}}\n';
    assert.deepEqual(await invoke({ home }, 'status', {}), { ok: true });
  } finally {
    server.close();
    tmp.cleanup();
  }
});
