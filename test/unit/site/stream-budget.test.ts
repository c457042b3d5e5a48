// The stream budget's refusal warning: one `peer.busy` event per connection,
// decided when a refusal is answered. Refusals come in bursts (headers of
// many streams read in one turn of the event loop), so a second stream may be
// refused before the first one's answer: the warning must still be given once.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { isFerryError } from '../../../src/core/errors.ts';
import { StreamBudget } from '../../../src/transport/stream-budget.ts';

test('one warning per connection, even when a second stream is refused before the first refusal is answered', () => {
  const budget = new StreamBudget({ sessionLimit: 100, daemonLimit: 1000 });
  const conn = {};
  const other = {};
  budget.open(conn).hold(90);
  for (let i = 0; i < 2; i++) assert.throws(() => budget.open(conn).hold(50), (e: unknown) => isFerryError(e, 'PEER_BUSY'));
  budget.open(other).hold(10);
  // both refusals are answered now
  assert.equal(budget.warnOnce(conn), true);
  assert.equal(budget.warnOnce(conn), false);
  assert.equal(budget.warnOnce(other), false, 'nothing of that connection was refused');
});
