// A command whose work waits on something that can never come (a bug: the walk's wait on its own
// unflushed batch was one) ends when the event loop empties; Node would exit 0 and say nothing,
// which a script takes for success. cli/main.ts's failUnfinished makes that INTERNAL, said.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';

const main = new URL('../../../src/cli/main.ts', import.meta.url).href;

function run(body: string): { status: number | null; stderr: string } {
  const script = `const { failUnfinished } = await import(${JSON.stringify(main)});\n${body}`;
  const r = spawnSync(process.execPath, ['--input-type=module', '-e', script], { encoding: 'utf8' });
  return { status: r.status, stderr: r.stderr };
}

test('a command that ends before its work did exits INTERNAL and says so; one that finished exits as it said', () => {
  const never = run('failUnfinished(new Promise(() => {}));');
  assert.equal(never.status, 1);
  assert.match(never.stderr, /ended before its work did/);
  assert.match(never.stderr, /take it as failed, and run it again/);

  const done = run('failUnfinished(Promise.resolve());');
  assert.equal(done.status, 0);
  assert.equal(done.stderr, '');

  // An exit code set by the command stays (a refusal is not turned into INTERNAL).
  const refused = run('failUnfinished(new Promise(() => {})); process.exitCode = 4;');
  assert.equal(refused.status, 4);

  // The reader of stdout gone (EPIPE): the command says it is finished before exiting.
  const finished = run('const finish = failUnfinished(new Promise(() => {})); finish();');
  assert.equal(finished.status, 0);
});
