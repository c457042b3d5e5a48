// A site's TLS identity: an ECDSA P-256 private key and a self-signed X.509
// certificate, and the site id derived from that certificate.
//
// Trust model (Syncthing's): there is no certificate authority. Each site
// generates its own key and self-signed certificate at `ferry init`; two
// sites are paired by telling each the other's site id (`ferry site add NAME
// URL --id ID`). On every connection both sides present their certificates
// (mutual TLS), the TLS handshake proves each side holds the private key of
// the certificate it presented, and the application then accepts the peer
// only if the SHA-256 fingerprint of that certificate is one it has pinned.
// Certificate chains, names and expiry are deliberately not consulted:
// the pin alone decides.
//
// Why the id is the certificate fingerprint and not the key's: the
// certificate is exactly what TLS presents, so the check is one hash of
// bytes the handshake already has (no parsing of key formats that vary by
// algorithm and encoding), and it is what Syncthing and SSH-style pinning
// tools compare too. It also binds everything in the certificate (name,
// validity, usages) to the id: nobody can take a site's key and wrap it in a
// different certificate that still passes as that site.
//
// Rotating means issuing a new certificate, with a new key or even the same
// key: the id changes, because it is the hash of the certificate. Every peer
// must then re-pair with the new id (`ferry site add ... --id NEW`); until
// it does, it refuses the rotated site with PEER_UNTRUSTED. The certificate
// is valid for 100 years so that nothing ever forces a rotation; rotate only
// when the key may have leaked.
//
// The certificate is built here with a minimal DER encoder (no dependency):
// X.509 v3, ecdsa-with-SHA256, issuer = subject = O=ferry, CN=ferry site
// <name>, basicConstraints CA:false (critical), keyUsage digitalSignature
// (critical), extendedKeyUsage serverAuth + clientAuth, subjectAltName
// DNS:ferry. keyUsage has no keyCertSign (RFC 5280 allows it only with
// CA:true), so OpenSSL's X509_check_issued (crypto.X509Certificate
// checkIssued) says a ferry certificate did not issue itself; "self-signed"
// is checked here as issuer == subject plus a signature that verifies with
// the certificate's own key.
//
// Site ids are 52 characters: base32 (RFC 4648 alphabet, upper case, no
// padding) of the 32-byte SHA-256. For people they are shown as 13 groups of
// 4 joined by '-'; parseSiteId accepts either form, any case, with spaces.

import {
  X509Certificate,
  createHash,
  createPrivateKey,
  generateKeyPairSync,
  randomBytes,
  sign,
  verify,
  type KeyObject,
} from 'node:crypto';
import * as fs from 'node:fs';
import * as path from 'node:path';
import { FerryError, wrapIoError } from '../core/errors.ts';
import { parseName } from '../core/ids.ts';

export interface SiteIdentity {
  /** the site id: 52-char base32 SHA-256 of certDer */
  id: string;
  /** PKCS#8 PEM private key */
  keyPem: string;
  /** PEM certificate */
  certPem: string;
  /** DER certificate: the bytes the id hashes */
  certDer: Buffer;
}

export const KEY_FILE = 'key.pem';
export const CERT_FILE = 'cert.pem';

// ---------------------------------------------------------------------------
// Minimal DER encoder (X.690): just what a certificate needs.

const TAG = {
  BOOLEAN: 0x01,
  INTEGER: 0x02,
  BIT_STRING: 0x03,
  OCTET_STRING: 0x04,
  NULL: 0x05,
  OID: 0x06,
  UTF8_STRING: 0x0c,
  PRINTABLE_STRING: 0x13,
  IA5_STRING: 0x16,
  UTC_TIME: 0x17,
  GENERALIZED_TIME: 0x18,
  SEQUENCE: 0x30,
  SET: 0x31,
} as const;

function derLength(n: number): Buffer {
  if (!Number.isSafeInteger(n) || n < 0) throw new FerryError('INTERNAL', `DER length out of range: ${n}`);
  if (n < 0x80) return Buffer.from([n]);
  const bytes: number[] = [];
  for (let v = n; v > 0; v = Math.floor(v / 256)) bytes.unshift(v % 256);
  return Buffer.from([0x80 | bytes.length, ...bytes]);
}

function tlv(tag: number, content: Uint8Array): Buffer {
  return Buffer.concat([Buffer.from([tag]), derLength(content.length), content]);
}

/**
 * INTEGER. A bigint or number is encoded in minimal two's complement; a byte
 * array is taken as an unsigned big-endian magnitude (leading zeros dropped,
 * a 0x00 prepended when the top bit is set so it stays positive).
 */
function derInteger(v: bigint | number | Uint8Array): Buffer {
  if (v instanceof Uint8Array) {
    let i = 0;
    while (i < v.length - 1 && v[i] === 0) i++;
    let mag = Buffer.from(v.subarray(i));
    if (mag.length === 0) mag = Buffer.from([0]);
    if (mag[0] & 0x80) mag = Buffer.concat([Buffer.from([0]), mag]);
    return tlv(TAG.INTEGER, mag);
  }
  let n = BigInt(v);
  // smallest byte count k with -2^(8k-1) <= n < 2^(8k-1)
  let k = 1;
  while (n < -(1n << BigInt(8 * k - 1)) || n >= 1n << BigInt(8 * k - 1)) k++;
  if (n < 0n) n += 1n << BigInt(8 * k);
  const out = Buffer.alloc(k);
  for (let j = k - 1; j >= 0; j--) {
    out[j] = Number(n & 0xffn);
    n >>= 8n;
  }
  return tlv(TAG.INTEGER, out);
}

function derOid(dotted: string): Buffer {
  if (!/^[0-2](\.(0|[1-9][0-9]*))+$/.test(dotted)) throw new FerryError('INTERNAL', `bad OID ${dotted}`);
  const arcs = dotted.split('.').map((a) => BigInt(a));
  if (arcs[0] < 2n && arcs[1] > 39n) throw new FerryError('INTERNAL', `bad OID ${dotted}`);
  const first = arcs[0] * 40n + arcs[1];
  const bytes: number[] = [];
  for (const arc of [first, ...arcs.slice(2)]) {
    const groups: number[] = [Number(arc & 0x7fn)];
    for (let a = arc >> 7n; a > 0n; a >>= 7n) groups.unshift(Number(a & 0x7fn) | 0x80);
    bytes.push(...groups);
  }
  return tlv(TAG.OID, Buffer.from(bytes));
}

const PRINTABLE = /^[A-Za-z0-9 '()+,\-./:=?]*$/;

function derPrintableString(s: string): Buffer {
  if (!PRINTABLE.test(s)) throw new FerryError('INTERNAL', `not a PrintableString: ${JSON.stringify(s)}`);
  return tlv(TAG.PRINTABLE_STRING, Buffer.from(s, 'ascii'));
}

function derIa5String(s: string): Buffer {
  if (!/^[\x00-\x7f]*$/.test(s)) throw new FerryError('INTERNAL', `not an IA5String: ${JSON.stringify(s)}`);
  return tlv(TAG.IA5_STRING, Buffer.from(s, 'ascii'));
}

function pad(n: number, width: number): string {
  return String(n).padStart(width, '0');
}

function checkDate(d: Date): void {
  if (Number.isNaN(d.getTime())) throw new FerryError('INTERNAL', 'invalid date in certificate');
}

/** UTCTime YYMMDDHHMMSSZ, for years 1950-2049 only (RFC 5280 4.1.2.5.1). */
function derUtcTime(d: Date): Buffer {
  checkDate(d);
  const y = d.getUTCFullYear();
  if (y < 1950 || y > 2049) throw new FerryError('INTERNAL', `UTCTime cannot hold year ${y}`);
  const s =
    pad(y % 100, 2) + pad(d.getUTCMonth() + 1, 2) + pad(d.getUTCDate(), 2) +
    pad(d.getUTCHours(), 2) + pad(d.getUTCMinutes(), 2) + pad(d.getUTCSeconds(), 2) + 'Z';
  return tlv(TAG.UTC_TIME, Buffer.from(s, 'ascii'));
}

/** GeneralizedTime YYYYMMDDHHMMSSZ, no fractional seconds (RFC 5280 4.1.2.5.2). */
function derGeneralizedTime(d: Date): Buffer {
  checkDate(d);
  const y = d.getUTCFullYear();
  if (y < 0 || y > 9999) throw new FerryError('INTERNAL', `GeneralizedTime cannot hold year ${y}`);
  const s =
    pad(y, 4) + pad(d.getUTCMonth() + 1, 2) + pad(d.getUTCDate(), 2) +
    pad(d.getUTCHours(), 2) + pad(d.getUTCMinutes(), 2) + pad(d.getUTCSeconds(), 2) + 'Z';
  return tlv(TAG.GENERALIZED_TIME, Buffer.from(s, 'ascii'));
}

/** X.509 Time: UTCTime through 2049, GeneralizedTime from 2050 on. */
function derTime(d: Date): Buffer {
  checkDate(d);
  const y = d.getUTCFullYear();
  return y >= 1950 && y <= 2049 ? derUtcTime(d) : derGeneralizedTime(d);
}

function derBitString(bytes: Uint8Array, unusedBits = 0): Buffer {
  if (!Number.isInteger(unusedBits) || unusedBits < 0 || unusedBits > 7 || (bytes.length === 0 && unusedBits !== 0)) {
    throw new FerryError('INTERNAL', `bad BIT STRING unused-bit count ${unusedBits}`);
  }
  return tlv(TAG.BIT_STRING, Buffer.concat([Buffer.from([unusedBits]), bytes]));
}

/** SET OF: DER sorts the encoded elements. */
function derSetOf(...items: Buffer[]): Buffer {
  return tlv(TAG.SET, Buffer.concat([...items].sort(Buffer.compare)));
}

export const der = {
  length: derLength,
  tlv,
  integer: derInteger,
  oid: derOid,
  sequence: (...items: Buffer[]): Buffer => tlv(TAG.SEQUENCE, Buffer.concat(items)),
  setOf: derSetOf,
  utf8String: (s: string): Buffer => tlv(TAG.UTF8_STRING, Buffer.from(s, 'utf8')),
  printableString: derPrintableString,
  ia5String: derIa5String,
  utcTime: derUtcTime,
  generalizedTime: derGeneralizedTime,
  time: derTime,
  bitString: derBitString,
  octetString: (bytes: Uint8Array): Buffer => tlv(TAG.OCTET_STRING, bytes),
  boolean: (b: boolean): Buffer => tlv(TAG.BOOLEAN, Buffer.from([b ? 0xff : 0x00])),
  null: (): Buffer => tlv(TAG.NULL, Buffer.alloc(0)),
  /** [n] EXPLICIT: a constructed context-specific tag wrapping one encoding. */
  explicit: (n: number, inner: Buffer): Buffer => {
    if (n < 0 || n > 30) throw new FerryError('INTERNAL', `context tag ${n} out of range`);
    return tlv(0xa0 | n, inner);
  },
  /** [n] IMPLICIT over a primitive type: the content octets under a context tag. */
  implicitPrimitive: (n: number, content: Uint8Array): Buffer => {
    if (n < 0 || n > 30) throw new FerryError('INTERNAL', `context tag ${n} out of range`);
    return tlv(0x80 | n, content);
  },
};

// ---------------------------------------------------------------------------
// Certificate

const OID = {
  ecdsaWithSHA256: '1.2.840.10045.4.3.2',
  commonName: '2.5.4.3',
  organizationName: '2.5.4.10',
  basicConstraints: '2.5.29.19',
  keyUsage: '2.5.29.15',
  extKeyUsage: '2.5.29.37',
  subjectAltName: '2.5.29.17',
  serverAuth: '1.3.6.1.5.5.7.3.1',
  clientAuth: '1.3.6.1.5.5.7.3.2',
} as const;

const VALIDITY_YEARS = 100;
/** ub-common-name (RFC 5280 appendix A): longer site names are cut in the CN only. */
const CN_MAX = 64;

function name(cn: string): Buffer {
  const rdn = (oid: string, value: string): Buffer => der.setOf(der.sequence(der.oid(oid), der.utf8String(value)));
  return der.sequence(rdn(OID.organizationName, 'ferry'), rdn(OID.commonName, cn));
}

function extension(oid: string, critical: boolean, value: Buffer): Buffer {
  // critical is BOOLEAN DEFAULT FALSE: DER omits it when false
  return critical
    ? der.sequence(der.oid(oid), der.boolean(true), der.octetString(value))
    : der.sequence(der.oid(oid), der.octetString(value));
}

function buildCertificate(siteName: string, now: number, publicKey: KeyObject, privateKey: KeyObject): Buffer {
  const serial = randomBytes(16);
  serial[0] &= 0x7f; // positive
  if (serial[0] === 0) serial[0] = 0x01; // keep it 16 bytes long
  const notBefore = new Date(Math.floor(now / 1000) * 1000 - 3600_000);
  const notAfter = new Date(Math.floor(now / 1000) * 1000);
  notAfter.setUTCFullYear(notAfter.getUTCFullYear() + VALIDITY_YEARS);
  const cn = `ferry site ${siteName}`.slice(0, CN_MAX);
  const sigAlg = der.sequence(der.oid(OID.ecdsaWithSHA256)); // parameters absent (RFC 5758 3.2)
  const spki = publicKey.export({ type: 'spki', format: 'der' });
  const extensions = der.sequence(
    // cA DEFAULT FALSE is omitted, leaving an empty SEQUENCE
    extension(OID.basicConstraints, true, der.sequence()),
    // digitalSignature is bit 0; DER drops trailing zero bits: one byte, 7 unused
    extension(OID.keyUsage, true, der.bitString(Buffer.from([0x80]), 7)),
    extension(OID.extKeyUsage, false, der.sequence(der.oid(OID.serverAuth), der.oid(OID.clientAuth))),
    // GeneralName dNSName is [2] IMPLICIT IA5String
    extension(OID.subjectAltName, false, der.sequence(der.implicitPrimitive(2, Buffer.from('ferry', 'ascii')))),
  );
  const tbs = der.sequence(
    der.explicit(0, der.integer(2)), // v3
    der.integer(serial),
    sigAlg,
    name(cn),
    der.sequence(der.time(notBefore), der.time(notAfter)),
    name(cn),
    spki,
    der.explicit(3, extensions),
  );
  const signature = sign('sha256', tbs, privateKey); // DER Ecdsa-Sig-Value
  return der.sequence(tbs, sigAlg, der.bitString(signature));
}

function toPem(label: string, body: Buffer): string {
  const b64 = body.toString('base64');
  const lines: string[] = [];
  for (let i = 0; i < b64.length; i += 64) lines.push(b64.slice(i, i + 64));
  return `-----BEGIN ${label}-----\n${lines.join('\n')}\n-----END ${label}-----\n`;
}

/** Generate a new key and self-signed certificate for the site called `name`. */
export function createIdentity(siteName: string, now: number = Date.now()): SiteIdentity {
  parseName(siteName, 'site');
  if (!Number.isFinite(now)) throw new FerryError('INTERNAL', `createIdentity: bad time ${now}`);
  const { publicKey, privateKey } = generateKeyPairSync('ec', { namedCurve: 'P-256' });
  const certDer = buildCertificate(siteName, now, publicKey, privateKey);
  return {
    id: siteIdFromCert(certDer),
    keyPem: privateKey.export({ type: 'pkcs8', format: 'pem' }) as string,
    certPem: toPem('CERTIFICATE', certDer),
    certDer,
  };
}

// ---------------------------------------------------------------------------
// Site ids

const B32 = 'ABCDEFGHIJKLMNOPQRSTUVWXYZ234567';
export const SITE_ID_LENGTH = 52;
const GROUP = 4;

function base32(bytes: Uint8Array): string {
  let out = '';
  let acc = 0;
  let bits = 0;
  for (const b of bytes) {
    acc = ((acc << 8) | b) & 0xfff;
    bits += 8;
    while (bits >= 5) {
      bits -= 5;
      out += B32[(acc >> bits) & 31];
    }
  }
  if (bits > 0) out += B32[(acc << (5 - bits)) & 31];
  return out;
}

/** The site id of a certificate: base32 of the SHA-256 of its DER bytes. */
export function siteIdFromCert(certDer: Buffer): string {
  if (!certDer || certDer.length === 0) throw new FerryError('IDENTITY_INVALID', 'empty certificate: there is no site id to take from it');
  return base32(createHash('sha256').update(certDer).digest());
}

/** A site id grouped for people: 13 groups of 4 joined by '-'. */
export function formatSiteId(id: string): string {
  const raw = parseSiteId(id);
  const groups: string[] = [];
  for (let i = 0; i < raw.length; i += GROUP) groups.push(raw.slice(i, i + GROUP));
  return groups.join('-');
}

const SITE_ID_HINT =
  'a site id is 52 characters of A-Z and 2-7, usually shown in groups of 4 separated by dashes; ' +
  'copy it exactly as the other site prints it';

/**
 * Normalize a site id typed or pasted by a person (any case; dashes, spaces
 * and other whitespace ignored) and check it. Returns the raw 52-char form.
 */
export function parseSiteId(s: string): string {
  if (typeof s !== 'string') throw new FerryError('USAGE', `site id missing; ${SITE_ID_HINT}`);
  const shown = JSON.stringify(s.length > 80 ? s.slice(0, 80) + '...' : s);
  const raw = s.replace(/[\s-]+/g, '').toUpperCase();
  const bad = [...new Set(raw.replace(/[A-Z2-7]/g, ''))];
  if (bad.length > 0) {
    const confusable = bad.some((c) => '0189'.includes(c)) ? ' (the digits 0, 1, 8 and 9 are never used: 0 is probably O, 1 is I, 8 is B)' : '';
    throw new FerryError('USAGE', `site id ${shown} contains ${bad.map((c) => JSON.stringify(c)).join(', ')}${confusable}; ${SITE_ID_HINT}`);
  }
  if (raw.length !== SITE_ID_LENGTH) {
    throw new FerryError('USAGE', `site id ${shown} has ${raw.length} characters, not ${SITE_ID_LENGTH}; ${SITE_ID_HINT}`);
  }
  // 256 bits fill 51 characters and 1 bit of the 52nd: its last 4 bits are zero
  if (B32.indexOf(raw[SITE_ID_LENGTH - 1]) & 0x0f) {
    throw new FerryError('USAGE', `site id ${shown} cannot be a site id (its last character must be A or Q); ${SITE_ID_HINT}`);
  }
  return raw;
}

// ---------------------------------------------------------------------------
// Files

function readPemFile(file: string, what: string): string {
  try {
    return fs.readFileSync(file, 'utf8');
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code === 'ENOENT') {
      throw new FerryError(
        'IDENTITY_INVALID',
        `${file} is missing: this site has no ${what}. Restore key.pem and cert.pem from a backup of this site; ` +
          'creating a new identity gives the site a new id, and every peer must then re-pair with it',
        { cause: err, details: { file } },
      );
    }
    throw wrapIoError(err, `reading site ${what} ${file}`, { writing: false });
  }
}

function restoreHint(dir: string): string {
  return `restore key.pem and cert.pem in ${dir} together from a backup of this site (a new identity means a new site id, and every peer must re-pair)`;
}

/**
 * Read <dir>/key.pem and <dir>/cert.pem and check them: both parse, the
 * certificate is self-signed, and the key is the certificate's key (a
 * challenge signed with the key verifies with the certificate).
 */
export function loadIdentity(dir: string): SiteIdentity {
  const keyFile = path.join(dir, KEY_FILE);
  const certFile = path.join(dir, CERT_FILE);
  const keyPem = readPemFile(keyFile, 'private key');
  const certText = readPemFile(certFile, 'certificate');

  let key: KeyObject;
  try {
    key = createPrivateKey({ key: keyPem, format: 'pem' });
  } catch (err) {
    const why = /passphrase/i.test(String((err as Error)?.message)) ? 'it is encrypted with a passphrase, which ferry does not support' : 'it is not a PEM private key';
    throw new FerryError('IDENTITY_INVALID', `${keyFile} cannot be used: ${why}; ${restoreHint(dir)}`, { cause: err, details: { file: keyFile } });
  }
  let cert: X509Certificate;
  try {
    if (!certText.includes('-----BEGIN CERTIFICATE-----')) throw new Error('no PEM CERTIFICATE block');
    cert = new X509Certificate(certText);
  } catch (err) {
    throw new FerryError('IDENTITY_INVALID', `${certFile} is not a PEM certificate (corrupt or truncated); ${restoreHint(dir)}`, {
      cause: err,
      details: { file: certFile },
    });
  }
  // Self-signed: issuer is subject and the signature verifies with its own
  // key. (Not X509Certificate.checkIssued: OpenSSL wants keyCertSign in the
  // issuer's keyUsage for that, which RFC 5280 forbids in a CA:false cert.)
  if (cert.issuer !== cert.subject || !cert.verify(cert.publicKey)) {
    throw new FerryError('IDENTITY_INVALID', `${certFile} is not a valid self-signed certificate (its signature does not verify); ${restoreHint(dir)}`, {
      details: { file: certFile },
    });
  }
  const challenge = randomBytes(32);
  const algo = key.asymmetricKeyType === 'ed25519' || key.asymmetricKeyType === 'ed448' ? null : 'sha256';
  let matches = false;
  try {
    matches = cert.checkPrivateKey(key) && verify(algo, challenge, cert.publicKey, sign(algo, challenge, key));
  } catch {
    matches = false;
  }
  if (!matches) {
    throw new FerryError(
      'IDENTITY_INVALID',
      `${keyFile} and ${certFile} do not belong together (the key does not match the certificate); ${restoreHint(dir)}`,
      { details: { keyFile, certFile } },
    );
  }
  const certDer = cert.raw;
  return { id: siteIdFromCert(certDer), keyPem, certPem: toPem('CERTIFICATE', certDer), certDer };
}

function fsyncDir(dir: string): void {
  let fd: number | undefined;
  try {
    fd = fs.openSync(dir, 'r');
    fs.fsyncSync(fd);
  } catch (err) {
    // some filesystems refuse fsync on a directory; the files themselves are synced
    const code = (err as NodeJS.ErrnoException).code;
    if (code !== 'EINVAL' && code !== 'EISDIR' && code !== 'EPERM' && code !== 'EBADF') throw err;
  } finally {
    if (fd !== undefined) fs.closeSync(fd);
  }
}

function writeSynced(file: string, data: string, mode: number): void {
  const fd = fs.openSync(file, 'wx', mode);
  try {
    fs.fchmodSync(fd, mode); // exact mode whatever the umask
    fs.writeFileSync(fd, data);
    fs.fsyncSync(fd);
  } finally {
    fs.closeSync(fd);
  }
}

function existsError(dir: string, present: string[]): FerryError {
  return new FerryError(
    'IDENTITY_EXISTS',
    `${present.map((f) => path.join(dir, f)).join(' and ')} already exist${present.length === 1 ? 's' : ''}: ferry never overwrites a site identity ` +
      '(a new one changes the site id and every peer must re-pair). ' +
      (present.length === 1 ? 'Only one of the two files is there, so an earlier save was probably interrupted: remove it and retry. ' : '') +
      'To rotate the identity on purpose, move both files away first',
    { details: { dir, files: present } },
  );
}

/**
 * Write <dir>/key.pem (0600) and <dir>/cert.pem (0644): each to a temp file,
 * fsynced, then moved into place without replacing anything (link, which
 * fails if the name exists, then unlink of the temp file), and the directory
 * synced. Refuses with IDENTITY_EXISTS if either file is already there.
 */
export function saveIdentity(dir: string, ident: SiteIdentity): void {
  const files: Array<{ name: string; data: string; mode: number }> = [
    { name: CERT_FILE, data: ident.certPem, mode: 0o644 },
    { name: KEY_FILE, data: ident.keyPem, mode: 0o600 },
  ];
  try {
    fs.mkdirSync(dir, { recursive: true, mode: 0o700 });
  } catch (err) {
    throw wrapIoError(err, `creating ${dir}`);
  }
  const present = files.filter((f) => fs.existsSync(path.join(dir, f.name))).map((f) => f.name);
  if (present.length > 0) throw existsError(dir, present);

  const suffix = `.tmp-${process.pid}-${randomBytes(6).toString('hex')}`;
  const temps: string[] = [];
  const placed: string[] = [];
  try {
    for (const f of files) {
      const tmp = path.join(dir, f.name + suffix);
      temps.push(tmp);
      writeSynced(tmp, f.data, f.mode);
    }
    for (const f of files) {
      const tmp = path.join(dir, f.name + suffix);
      const dest = path.join(dir, f.name);
      try {
        fs.linkSync(tmp, dest); // fails with EEXIST rather than replace
      } catch (err) {
        const code = (err as NodeJS.ErrnoException).code;
        if (code === 'EEXIST') throw existsError(dir, [f.name]);
        if (code !== 'EPERM' && code !== 'ENOTSUP' && code !== 'EOPNOTSUPP' && code !== 'ENOSYS') throw err;
        // no hard links on this filesystem: check, then rename
        if (fs.existsSync(dest)) throw existsError(dir, [f.name]);
        fs.renameSync(tmp, dest);
      }
      placed.push(dest);
    }
    for (const tmp of temps) fs.rmSync(tmp, { force: true });
    fsyncDir(dir);
  } catch (err) {
    for (const tmp of temps) fs.rmSync(tmp, { force: true });
    // undo our own half-done save so a retry is not refused
    for (const dest of placed) fs.rmSync(dest, { force: true });
    throw wrapIoError(err, `saving the site identity in ${dir}`);
  }
}

// ---------------------------------------------------------------------------
// TLS helpers

/** The key and certificate options for node:tls / node:http2, server or client. */
export function tlsOptionsFor(ident: SiteIdentity): { key: string; cert: string } {
  return { key: ident.keyPem, cert: ident.certPem };
}

/**
 * Decide whether a peer that completed the TLS handshake is one we paired
 * with. Pass the DER of the certificate it presented
 * (`socket.getPeerCertificate().raw`). TLS itself has proven the peer holds
 * that certificate's key (connect with `rejectUnauthorized: false`, since
 * self-signed certificates have no chain to check); this checks the pin.
 * `allowedIds` holds raw ids (as parseSiteId returns them). Returns the
 * peer's site id, or throws PEER_UNTRUSTED naming the id it presented.
 */
export function verifyPeerCertificate(peerCertDer: Buffer | null | undefined, allowedIds: ReadonlySet<string>): string {
  if (!peerCertDer || peerCertDer.length === 0) {
    throw new FerryError('PEER_UNTRUSTED', 'the peer presented no TLS certificate, so it cannot be a ferry site; only paired ferry sites may connect');
  }
  const id = siteIdFromCert(peerCertDer);
  if (allowedIds.has(id)) return id;
  const shown = formatSiteId(id);
  throw new FerryError(
    'PEER_UNTRUSTED',
    `the peer presented site id ${shown}, which is not paired with this site; ` +
      `if you trust it, pair it (check the id with the other site first): ferry site add NAME URL --id ${shown}. ` +
      'If it was paired before, its identity has changed (new key or certificate) and it must be paired again',
    { details: { peerId: id } },
  );
}
