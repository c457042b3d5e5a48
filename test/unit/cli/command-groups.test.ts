// A command run from the shell loads only its own group (src/cli/main.ts, COMMAND_GROUPS): the
// table must name, for every top-level command of the whole program, the group that registers it,
// and the path of a command that asks the daemon must not load the site's code.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { execFileSync, spawnSync } from 'node:child_process';
import { Command } from 'commander';
import { COMMAND_GROUPS, commandWord, programFor } from '../../../src/cli/main.ts';
import { buildProgram } from '../../../src/cli/program.ts';

test('every top-level command maps to the group that registers it, and the whole program has no other', async () => {
  const whole = buildProgram().commands.map((c) => c.name()).filter((n) => n !== 'help' && n !== 'completion').sort();
  assert.deepEqual(Object.keys(COMMAND_GROUPS).sort(), whole);
  for (const [word, load] of Object.entries(COMMAND_GROUPS)) {
    const p = new Command();
    (await load()).register(p, () => ({}));
    assert.ok(p.commands.some((c) => c.name() === word), `${word}: its group does not register it`);
  }
});

test('the command word is found after the global options; help, version and unknown words take the whole program', async () => {
  const argv = (...a: string[]) => ['node', 'ferry', ...a];
  assert.equal(commandWord(argv('--home', '/x', '--json', 'mirror', 'update')), 'mirror');
  assert.equal(commandWord(argv('--home=/x', 'status')), 'status');
  assert.equal(commandWord(argv('--help')), undefined);
  assert.equal(commandWord(argv()), undefined);
  // A group alone still has its subcommands, options and examples.
  const mirror = await programFor(argv('mirror', 'update', 'v'));
  const update = mirror.commands.find((c) => c.name() === 'mirror')!.commands.find((c) => c.name() === 'update')!;
  assert.ok(update.options.some((o) => o.long === '--wait'));
  assert.ok(update.options.some((o) => o.long === '--home'), 'each command takes --home');
  assert.equal((await programFor(argv('help', 'mirror'))).commands.length, buildProgram().commands.length);
  assert.equal((await programFor(argv('no-such-command'))).commands.length, buildProgram().commands.length, 'an unknown word gets the whole program (its error lists what exists)');
});

test('the path of `status` to a daemon loads no catalog, store, snapshot or replication code', () => {
  // Record every module the child loads, then build the status command's program as main() does.
  const hook = `data:text/javascript,${encodeURIComponent(`
    import { registerHooks } from 'node:module';
    globalThis.__loaded = [];
    registerHooks({ load(url, ctx, next) { globalThis.__loaded.push(url); return next(url, ctx); } });`)}`;
  const script = `
    const { programFor } = await import(${JSON.stringify(new URL('../../../src/cli/main.ts', import.meta.url).href)});
    await import(${JSON.stringify(new URL('../../../src/cli/invoke.ts', import.meta.url).href)});
    await programFor(['node', 'ferry', 'status']);
    console.log(JSON.stringify(globalThis.__loaded.filter((u) => u.includes('/src/'))));`;
  const out = execFileSync(process.execPath, ['--import', hook, '--input-type=module', '-e', script], { encoding: 'utf8' });
  const loaded = (JSON.parse(out) as string[]).map((u) => u.slice(u.indexOf('/src/') + 1));
  // Two small leaves are fine: the site file's default name (config/schema.ts) and how a path is shown (snapshot/path-text.ts).
  const light = new Set(['src/config/schema.ts', 'src/snapshot/path-text.ts']);
  const heavy = loaded.filter((p) => !light.has(p) && (/^src\/(catalog|store|snapshot|replication|dr|config)\//.test(p) || /^src\/site\/(site|engine|ops|daemon)\.ts$/.test(p)));
  assert.deepEqual(heavy, [], `loaded: ${loaded.join(', ')}`);
  assert.ok(loaded.includes('src/cli/commands/status.ts'));
});

test("the path of a command to a daemon loads none of Node's heavy built-ins (http2, tls, crypto, zlib, workers, undici)", () => {
  // An ESM import of node:http evaluates each of its exports for the module's facade, and some are
  // getters that load undici and with it http2, tls and crypto: about 50 ms of every command's start.
  for (const words of [['status'], ['mirror', 'update']]) {
    const script = `
      const before = new Set(process.moduleLoadList);
      const { programFor } = await import(${JSON.stringify(new URL('../../../src/cli/main.ts', import.meta.url).href)});
      await import(${JSON.stringify(new URL('../../../src/cli/invoke.ts', import.meta.url).href)});
      await programFor(['node', 'ferry', ...${JSON.stringify(words)}]);
      console.log(JSON.stringify(process.moduleLoadList.filter((m) => !before.has(m))));`;
    const loaded = JSON.parse(execFileSync(process.execPath, ['--input-type=module', '-e', script], { encoding: 'utf8' })) as string[];
    const heavy = loaded.filter((m) => /^NativeModule (http2|tls|crypto|zlib|worker_threads|internal\/deps\/undici\/undici)$/.test(m));
    assert.deepEqual(heavy, [], `${words.join(' ')} loaded: ${heavy.join(', ')}`);
    assert.ok(loaded.includes('NativeModule http'), 'the check sees built-ins loaded (node:http is)');
  }
});

test("the launcher starts the commands that only ask with Node's embedded code cache kept, and the others with the slow heap growth", () => {
  // --heap-growing-percent (the daemon's memory: docs/memory.md) changes V8's flag hash, and with it
  // Node refuses the code cache its binary carries for its own modules: each built-in a command
  // loads is compiled from source, 20 ms of a 90 ms `ferry status`. So `status` and the other
  // commands that only ask start without it (bin/ferry), whatever global options come first.
  const launcher = new URL('../../../bin/ferry', import.meta.url).pathname;
  const cache = (args: string[]) => {
    const r = spawnSync(launcher, args, { encoding: 'utf8', env: { ...process.env, NODE_DEBUG_NATIVE: 'CODE_CACHE' } });
    assert.equal(r.status, 0, r.stderr);
    const lines = r.stderr.split('\n');
    return { rejected: lines.filter((l) => /code cache .* is rejected/i.test(l)).length, accepted: lines.filter((l) => /code cache .* is accepted/i.test(l)).length };
  };
  for (const args of [['--version'], ['status', '--help'], ['--home', '/nonexistent', '--json', 'status', '--help'], ['--home=/x', 'events', '--help']]) {
    const c = cache(args);
    assert.equal(c.rejected, 0, `${args.join(' ')}: built-ins compiled anew`);
    assert.ok(c.accepted > 0, `${args.join(' ')}: the check sees the cache used`);
  }
  // the flag's effect, seen the same way: a command that may do the work itself takes it
  for (const args of [['snapshot', '--help'], ['--home', 'status', 'serve', '--help']]) assert.ok(cache(args).rejected > 0, `${args.join(' ')}: started without the heap flag`);
});
