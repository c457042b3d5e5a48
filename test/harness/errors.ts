// Asserting how a command failed, as an operator sees it: its exit status,
// its stable error code (src/core/errors.ts), and what its message says.
import assert from 'node:assert/strict';
import type { CliResult } from '../helpers.ts';

/**
 * The error code of a failed command: from the --json document (`{"error": {"code": ...}}`),
 * else from stderr, where the CLI ends its error line with the code in brackets
 * (`ferry: <message> [CODE]`, src/cli/output.ts reportError; a message may span lines). The
 * last code that ends a line, after the first `ferry: `, counts.
 */
export function errorCode(r: CliResult): string | undefined {
  if (r.json?.error?.code) return r.json.error.code;
  const from = r.stderr.indexOf('ferry: ');
  if (from < 0) return undefined;
  return [...r.stderr.slice(from).matchAll(/ \[([A-Z][A-Z0-9_]*)\]$/gm)].at(-1)?.[1];
}

/** The command failed with this exit status and error code, and (if given) its message matches. */
export function assertRefused(r: CliResult, exit: number, code: string, message?: RegExp, what = ''): void {
  const show = `${what ? `${what}: ` : ''}\nstdout: ${r.stdout}\nstderr: ${r.stderr}`;
  assert.equal(r.code, exit, `expected exit ${exit} (${code}), got ${r.code}${show}`);
  assert.equal(errorCode(r), code, `expected error code ${code}${show}`);
  if (message) assert.match(r.json?.error?.message ?? r.stderr, message);
}

/**
 * The command a refusal tells the operator to run (the last `` `ferry ...` `` in its message), as
 * the words after `ferry`: a test runs it as it stands, to prove the advice is accepted. Fails
 * when the message names no command.
 */
export function suggestedCommand(r: CliResult): string[] {
  const message: string = r.json?.error?.message ?? r.stderr;
  const cmd = [...message.matchAll(/`ferry ([^`]+)`/g)].at(-1)?.[1];
  assert.ok(cmd, `the refusal names no command to run: ${message}`);
  return cmd.trim().split(/\s+/);
}
