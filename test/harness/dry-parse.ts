// A ferry command line checked against the real CLI without running it: split
// into words as a shell would (shellWords), then parsed by the commander
// program with every action a no-op (dryParse). The docs test
// (integration/docs-commands.test.ts) and the test of the commands error
// messages suggest (unit/cli/suggested-commands.test.ts) both use it.
import assert from 'node:assert/strict';
import { Command } from 'commander';
import { buildProgram } from '../../src/cli/program.ts';

/** Split a shell command line into words: quotes, backslash escapes; stops at a comment, pipe, list or redirection. */
export function shellWords(s: string): string[] {
  const words: string[] = [];
  let cur = '';
  let inWord = false;
  let i = 0;
  const flush = () => {
    if (inWord) words.push(cur);
    cur = '';
    inWord = false;
  };
  while (i < s.length) {
    const c = s[i];
    if (c === "'") {
      const end = s.indexOf("'", i + 1);
      assert.ok(end > i, `unterminated ' in: ${s}`);
      cur += s.slice(i + 1, end);
      inWord = true;
      i = end + 1;
    } else if (c === '"') {
      let j = i + 1;
      while (j < s.length && s[j] !== '"') {
        if (s[j] === '\\' && j + 1 < s.length) j++;
        cur += s[j];
        j++;
      }
      assert.ok(j < s.length, `unterminated " in: ${s}`);
      inWord = true;
      i = j + 1;
    } else if (c === '\\' && i + 1 < s.length) {
      cur += s[i + 1];
      inWord = true;
      i += 2;
    } else if (/\s/.test(c)) {
      flush();
      i++;
    } else if (!inWord && c === '#') {
      break;
    } else if (c === '|' || c === ';' || c === '>' || c === '<' || c === '&') {
      break;
    } else {
      cur += c;
      inWord = true;
      i++;
    }
  }
  flush();
  return words;
}

function allCommands(c: Command): Command[] {
  return [c, ...c.commands.flatMap(allCommands)];
}

/** Parse argv with the real program, every action a no-op: throws the CommanderError a wrong command line gets. */
export async function dryParse(argv: string[]): Promise<void> {
  const program = buildProgram();
  for (const c of allCommands(program)) {
    c.configureOutput({ writeOut: () => {}, writeErr: () => {}, outputError: () => {} });
    // A group command (`ferry mirror`) has no action of its own: leave it so, a bare group is an error.
    if (c !== program && c.commands.length === 0) c.action(() => {});
  }
  await program.parseAsync(argv, { from: 'user' });
}

