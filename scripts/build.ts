// Builds what the npm package ships in dist/ (run by `npm pack` as prepack,
// or `npm run build`): the sources compiled to JavaScript by tsc
// (tsconfig.build.json: types erased, relative `.ts` imports rewritten to
// `.js`, one .js file per .ts file in the same layout), the files the code
// reads beside itself (dashboard-page.html), and the manual page ferry.1.
// Node refuses to strip types under node_modules, so an installed ferry must
// run JavaScript; the repository itself keeps running the sources.
//
// tsc rewrites the `.ts` of relative imports, not of a module a worker is
// started from (`new Worker(new URL('./chunk-worker.ts', import.meta.url))`):
// the build rewrites those URLs to the emitted `.js` itself, so the sources
// keep naming the file that is there. Then it checks what the layout
// promises before anything is replaced: no relative import still names a .ts
// file, and every `new URL('./x', import.meta.url)` (worker modules, the
// dashboard page) names a file that is there. It builds into a new directory
// and swaps it for dist/ at the end, so a failed build leaves the previous
// one whole.
import { execFileSync } from 'node:child_process';
import { copyFileSync, existsSync, mkdirSync, readdirSync, readFileSync, renameSync, rmSync, writeFileSync } from 'node:fs';
import { dirname, join, relative } from 'node:path';
import { fileURLToPath } from 'node:url';

const ROOT = dirname(dirname(fileURLToPath(import.meta.url)));

function walk(dir: string): string[] {
  return readdirSync(dir, { withFileTypes: true }).flatMap((e) => (e.isDirectory() ? walk(join(dir, e.name)) : [join(dir, e.name)]));
}

/** What is wrong with the emitted JavaScript under `out`: one line per problem. */
export function checkEmitted(out: string): string[] {
  const problems: string[] = [];
  for (const file of walk(out).filter((f) => f.endsWith('.js'))) {
    const text = readFileSync(file, 'utf8');
    const rel = relative(out, file);
    for (const m of text.matchAll(/\b(?:from|import)\s*\(?\s*(['"])(\.{1,2}\/[^'"]+)\1/g)) {
      if (m[2].endsWith('.ts')) problems.push(`${rel}: still imports ${m[2]}`);
      else if (!existsSync(join(dirname(file), m[2]))) problems.push(`${rel}: imports ${m[2]}, which is not in the build`);
    }
    for (const m of text.matchAll(/new URL\(\s*(['"`])([^'"`]+)\1\s*,\s*import\.meta\.url\s*\)/g)) {
      if (!m[2].includes('${') && !existsSync(join(dirname(file), m[2]))) problems.push(`${rel}: reads ${m[2]} beside itself, which is not in the build`);
    }
    if (/new URL\(\s*`[^`]*\$\{[^`]*`\s*,\s*import\.meta\.url/.test(text)) problems.push(`${rel}: names a file beside itself with a template literal, which the build cannot check`);
  }
  return problems;
}

/** `new URL('./x.ts', import.meta.url)` -> './x.js' in every emitted file (a module started as a worker); returns how many. */
export function rewriteModuleUrls(out: string): number {
  let n = 0;
  for (const file of walk(out).filter((f) => f.endsWith('.js'))) {
    const text = readFileSync(file, 'utf8');
    const next = text.replace(/(new URL\(\s*)(['"])(\.{1,2}\/[^'"]+)\.ts\2(\s*,\s*import\.meta\.url\s*\))/g, (_m, a: string, q: string, path: string, b: string) => {
      n++;
      return `${a}${q}${path}.js${q}${b}`;
    });
    if (next !== text) writeFileSync(file, next);
  }
  return n;
}

export async function build(o: { quiet?: boolean } = {}): Promise<string> {
  const dist = join(ROOT, 'dist');
  const tmp = join(ROOT, `dist.tmp-${process.pid}`);
  rmSync(tmp, { recursive: true, force: true });
  try {
    execFileSync(process.execPath, [join(ROOT, 'node_modules', 'typescript', 'bin', 'tsc'), '-p', join(ROOT, 'tsconfig.build.json'), '--outDir', tmp], { cwd: ROOT, stdio: 'inherit' });
    // Files the code reads beside itself (everything under src/ that is not TypeScript).
    const src = join(ROOT, 'src');
    for (const f of walk(src).filter((x) => !x.endsWith('.ts'))) {
      const to = join(tmp, relative(src, f));
      mkdirSync(dirname(to), { recursive: true });
      copyFileSync(f, to);
    }
    rewriteModuleUrls(tmp);
    const problems = checkEmitted(tmp);
    if (problems.length) throw new Error(`the build is not runnable:\n  ${problems.join('\n  ')}`);
    // The manual page, from the program's own definition (as `ferry help --man` prints it).
    const { buildProgram } = await import('../src/cli/program.ts');
    const { describeProgram } = await import('../src/cli/completion.ts');
    const { manPage } = await import('../src/cli/man.ts');
    const { FERRY_VERSION } = await import('../src/site/site.ts');
    mkdirSync(join(tmp, 'man'), { recursive: true });
    writeFileSync(join(tmp, 'man', 'ferry.1'), manPage(describeProgram(buildProgram()), FERRY_VERSION));
    rmSync(dist, { recursive: true, force: true });
    renameSync(tmp, dist);
  } finally {
    rmSync(tmp, { recursive: true, force: true });
  }
  if (!o.quiet) process.stderr.write(`built ${relative(process.cwd(), dist) || dist}: ${walk(dist).length} files\n`);
  return dist;
}

if (import.meta.main) await build();
