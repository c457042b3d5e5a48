// Paths as text (path-text.ts): every byte string survives pathToText then
// textToPath, valid UTF-8 reads as itself, and the spelling is the one the
// commands print and `restore --path` takes.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import fc from 'fast-check';
import { pathToText, textToPath } from '../../../src/snapshot/path-text.ts';

test('any bytes come back from their text', () => {
  fc.assert(fc.property(fc.uint8Array({ maxLength: 64 }), (bytes) => {
    assert.ok(textToPath(pathToText(bytes)).equals(Buffer.from(bytes)));
  }), { numRuns: 2000 });
  // bytes biased toward the interesting ones (backslash, x, hex digits, UTF-8 lead and continuation bytes)
  const tricky = fc.constantFrom(0x5c, 0x78, 0x41, 0x66, 0x30, 0xc3, 0xa9, 0xe2, 0x82, 0xac, 0xf0, 0x9f, 0x80, 0xff, 0xed, 0xa0, 0x0a, 0x2f);
  fc.assert(fc.property(fc.array(tricky, { maxLength: 24 }), (arr) => {
    const bytes = Buffer.from(arr);
    assert.ok(textToPath(pathToText(bytes)).equals(bytes));
  }), { numRuns: 5000 });
});

test('valid UTF-8 without backslashes or control characters is spelled as it is', () => {
  fc.assert(fc.property(fc.string({ unit: 'grapheme' }), (s) => {
    const clean = s.replace(/[\\\x00-\x1f\x7f]/g, '');
    assert.equal(pathToText(Buffer.from(clean)), clean);
    assert.ok(textToPath(clean).equals(Buffer.from(clean)));
  }));
});

test('the spelling: \\xHH for bytes that are not UTF-8 and control characters, \\\\ for a backslash', () => {
  assert.equal(pathToText(Buffer.from([0x63, 0x61, 0x66, 0xe9])), 'caf\\xe9');
  assert.equal(pathToText(Buffer.from('café/naïve')), 'café/naïve');
  assert.equal(pathToText(Buffer.from('a\\b')), 'a\\\\b');
  assert.equal(pathToText(Buffer.from('line\nbreak')), 'line\\x0abreak');
  assert.equal(pathToText(Buffer.from([0xed, 0xa0, 0x80])), '\\xed\\xa0\\x80'); // a UTF-16 surrogate encoded: not UTF-8
  assert.equal(pathToText(Buffer.from([0xc0, 0xaf])), '\\xc0\\xaf'); // overlong '/'
  assert.ok(textToPath('caf\\xE9/\\x80').equals(Buffer.from([0x63, 0x61, 0x66, 0xe9, 0x2f, 0x80])));
  // a backslash that starts no escape is itself
  assert.ok(textToPath('a\\b\\x4').equals(Buffer.from('a\\b\\x4')));
});
