// What a peer answers is untrusted input too (src/transport/http.ts): an error
// body becomes a FerryError of one of this ferry's codes (an unknown code is
// treated as no code: PROTOCOL, or PEER_UNREACHABLE for a 5xx), and a long
// answer that is not a JSON object is refused, never thrown at. The bodies here are crashes `npm run fuzz` found (target
// peer-answer).
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { ERRORS, FerryError } from '../../../src/core/errors.ts';
import { errorFromBody, parseLongAnswer } from '../../../src/transport/http.ts';

test("a peer's error with a code that is not ferry's own (prototype names) is treated as having none", () => {
  for (const code of ['__proto__', 'constructor', 'toString', 'hasOwnProperty', 'NOPE']) {
    const body = Buffer.from(JSON.stringify({ error: { code, message: 'x' } }));
    assert.equal(errorFromBody(400, body, 'peer').code, 'PROTOCOL', code);
    const e = errorFromBody(500, body, 'peer');
    assert.equal(e.code, 'PEER_UNREACHABLE', code);
    assert.ok(Object.hasOwn(ERRORS, e.code) && e.kind === ERRORS[e.code].kind && typeof e.exitCode === 'number');
  }
  const known = errorFromBody(409, Buffer.from(JSON.stringify({ error: { code: 'MIRROR_STATE', message: 'busy' } })), 'peer');
  assert.equal(known.code, 'MIRROR_STATE');
});

test('a long answer that is not a JSON object is refused as a bad gateway, not a TypeError', () => {
  for (const body of ['"a"', '5', 'null', 'true', '[]', '["result"]', '   "result"', 'nonsense']) {
    const r = parseLongAnswer(Buffer.from(body), 'peer');
    assert.ok(r instanceof FerryError, body);
    assert.equal(r.code, 'PEER_UNREACHABLE', body);
  }
  assert.deepEqual(parseLongAnswer(Buffer.from('   {"result": {"ok": 1}}'), 'peer'), Buffer.from('{"ok":1}'));
  const e = parseLongAnswer(Buffer.from(' {"error": {"code": "NOT_AUTHORIZED", "message": "no"}}'), 'peer');
  assert.ok(e instanceof FerryError && e.code === 'NOT_AUTHORIZED');
});
