// How fast V8 lets the old generation grow, set at run time by the processes
// that do the heavy work (the daemon; a command that changes a site without
// one: a snapshot, a restore, a verify), not on the launcher's command line.
//
// V8 lets a heap grow to a multiple of what was live at the last full
// collection (up to 4x) before it collects again; an initialize of 200,000
// files left the daemons' heaps at 190 MiB of mostly garbage (peak RSS 550 /
// 700 MiB). Growing 25 % at a time: 400 / 450 MiB, with no difference in CPU
// measured (docs/memory.md). The flag was on bin/ferry's command line until
// it showed that this V8 flag there changes V8's flag hash, so Node's embedded
// code cache for its own modules is refused and each built-in the command
// loads is compiled anew: 12 ms of `node -e` loading node:http, 20 ms of a
// 90 ms `ferry status` (docs/design.md, "Layers"). Set here,
// after the process has loaded its modules, it changes the same limit (a
// module loaded later is compiled without that cache: once per process).

let set = false;

/** Collect once the old generation grew 25 % past what was live (idempotent). */
export function slowHeapGrowth(): void {
  if (set) return;
  set = true;
  process.getBuiltinModule('node:v8').setFlagsFromString('--heap-growing-percent=25');
}
