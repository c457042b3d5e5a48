// scripts/build.ts's checks of the emitted JavaScript, on a small tree made
// here (the real build runs in test/integration/package.test.ts): a worker's
// `new URL('./x.ts', import.meta.url)` is rewritten to the .js beside it, and
// what would not run from the package (an import still naming .ts, a file
// read beside itself that is not there, a URL made with a template) is named.
import { test, after } from 'node:test';
import assert from 'node:assert/strict';
import { mkdirSync, readFileSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { checkEmitted, rewriteModuleUrls } from '../../scripts/build.ts';
import { tempDir } from '../helpers.ts';

const tmp = tempDir('ferry-build-');
after(tmp.cleanup);

test('worker URLs are rewritten to the emitted .js; what cannot run from the package is named', () => {
  const out = join(tmp.path, 'dist');
  mkdirSync(join(out, 'snapshot'), { recursive: true });
  writeFileSync(join(out, 'snapshot', 'pool.js'), "import { x } from './worker.js';\nnew Worker(new URL('./worker.ts', import.meta.url), {});\nnew Worker(new URL(\"../snapshot/worker.ts\", import.meta.url));\n");
  writeFileSync(join(out, 'snapshot', 'worker.js'), 'export const x = 1;\n');
  assert.deepEqual(checkEmitted(out), ['snapshot/pool.js: reads ./worker.ts beside itself, which is not in the build', 'snapshot/pool.js: reads ../snapshot/worker.ts beside itself, which is not in the build']);
  assert.equal(rewriteModuleUrls(out), 2);
  assert.equal(readFileSync(join(out, 'snapshot', 'pool.js'), 'utf8'), "import { x } from './worker.js';\nnew Worker(new URL('./worker.js', import.meta.url), {});\nnew Worker(new URL(\"../snapshot/worker.js\", import.meta.url));\n");
  assert.deepEqual(checkEmitted(out), []);
  assert.equal(rewriteModuleUrls(out), 0, 'a second pass changes nothing');

  writeFileSync(join(out, 'page.js'), "import './gone.js';\nimport { y } from './snapshot/worker.ts';\nreadFileSync(new URL('./page.html', import.meta.url));\nnew URL(`./w${ext}`, import.meta.url);\n");
  assert.deepEqual(checkEmitted(out), [
    'page.js: imports ./gone.js, which is not in the build',
    'page.js: still imports ./snapshot/worker.ts',
    'page.js: reads ./page.html beside itself, which is not in the build',
    'page.js: names a file beside itself with a template literal, which the build cannot check',
  ]);
});
