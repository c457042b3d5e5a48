import { test, describe, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { X509Certificate, createHash, createPrivateKey } from 'node:crypto';
import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import * as tls from 'node:tls';
import * as http2 from 'node:http2';
import type { AddressInfo } from 'node:net';
import { FerryError } from '../../../src/core/errors.ts';
import {
  createIdentity,
  der,
  formatSiteId,
  loadIdentity,
  parseSiteId,
  saveIdentity,
  siteIdFromCert,
  tlsOptionsFor,
  verifyPeerCertificate,
  type SiteIdentity,
} from '../../../src/transport/identity.ts';

/** Reference base32 (RFC 4648, no padding), written differently from the module's. */
function refBase32(buf: Buffer): string {
  const alphabet = 'ABCDEFGHIJKLMNOPQRSTUVWXYZ234567';
  let bits = [...buf].map((b) => b.toString(2).padStart(8, '0')).join('');
  while (bits.length % 5 !== 0) bits += '0';
  let out = '';
  for (let i = 0; i < bits.length; i += 5) out += alphabet[parseInt(bits.slice(i, i + 5), 2)];
  return out;
}

function hex(b: Buffer): string {
  return b.toString('hex');
}

function ferryCode(code: string, ...includes: string[]) {
  return (err: unknown): boolean => {
    assert.ok(err instanceof FerryError, `expected FerryError, got ${String(err)}`);
    assert.equal(err.code, code, err.message);
    for (const s of includes) assert.ok(err.message.includes(s), `message ${JSON.stringify(err.message)} lacks ${JSON.stringify(s)}`);
    return true;
  };
}

// Three identities shared by the tests (key generation is cheap, but the
// handshake tests need stable pairs).
const A = createIdentity('alpha');
const B = createIdentity('bravo');
const C = createIdentity('charlie');

describe('certificate', () => {
  const now = Date.UTC(2024, 0, 15, 12, 30, 45, 678);
  const ident = createIdentity('site-1', now);
  const x509 = new X509Certificate(ident.certDer);

  test('parses with node X509Certificate: names, validity, extensions', () => {
    assert.equal(x509.subject, 'O=ferry\nCN=ferry site site-1');
    assert.equal(x509.issuer, x509.subject);
    assert.equal(x509.validFromDate.getTime(), Date.UTC(2024, 0, 15, 11, 30, 45));
    assert.equal(x509.validToDate.getTime(), Date.UTC(2124, 0, 15, 12, 30, 45));
    assert.equal(x509.ca, false);
    assert.deepEqual([...(x509.keyUsage ?? [])].sort(), ['1.3.6.1.5.5.7.3.1', '1.3.6.1.5.5.7.3.2']);
    assert.equal(x509.subjectAltName, 'DNS:ferry');
    assert.equal(x509.signatureAlgorithmOid, '1.2.840.10045.4.3.2');
    assert.equal(x509.publicKey.asymmetricKeyType, 'ec');
    assert.equal(x509.publicKey.asymmetricKeyDetails?.namedCurve, 'prime256v1');
    // 16-byte positive serial
    assert.match(x509.serialNumber, /^[0-7][0-9A-F]{31}$/);
    assert.notEqual(new X509Certificate(createIdentity('site-1', now).certDer).serialNumber, x509.serialNumber);
  });

  test('is self-signed with the key it goes with', () => {
    assert.equal(x509.verify(x509.publicKey), true);
    assert.equal(x509.checkPrivateKey(createPrivateKey(ident.keyPem)), true);
    assert.equal(x509.checkPrivateKey(createPrivateKey(B.keyPem)), false);
    assert.equal(new X509Certificate(B.certDer).verify(x509.publicKey), false);
    // checkIssued(itself) is false on purpose: OpenSSL requires keyCertSign in
    // the issuer's keyUsage, which RFC 5280 allows only with CA:true.
    assert.equal(x509.checkIssued(x509), false);
    assert.equal(x509.raw.equals(ident.certDer), true);
    assert.equal(new X509Certificate(ident.certPem).raw.equals(ident.certDer), true);
  });

  test('critical basicConstraints CA:false and keyUsage digitalSignature, encoded as DER wants', () => {
    // extnID basicConstraints, critical TRUE, OCTET STRING { SEQUENCE {} }
    assert.ok(hex(ident.certDer).includes('0603551d130101ff04023000'));
    // extnID keyUsage, critical TRUE, OCTET STRING { BIT STRING 07 80 } = digitalSignature only
    assert.ok(hex(ident.certDer).includes('0603551d0f0101ff0404030207' + '80'));
    // v3, ecdsa-with-SHA256 with absent parameters
    assert.ok(hex(ident.certDer).includes('a003020102'));
    assert.ok(hex(ident.certDer).includes('300a06082a8648ce3d040302'));
  });

  test('UTCTime before 2050, GeneralizedTime from 2050', () => {
    // 2024 -> notBefore UTCTime, notAfter (2124) GeneralizedTime
    assert.ok(hex(ident.certDer).includes(hex(Buffer.concat([Buffer.from([0x17, 13]), Buffer.from('240115113045Z')]))));
    assert.ok(hex(ident.certDer).includes(hex(Buffer.concat([Buffer.from([0x18, 15]), Buffer.from('21240115123045Z')]))));
    const late = createIdentity('late', Date.UTC(2060, 5, 1));
    const lx = new X509Certificate(late.certDer);
    assert.equal(lx.validFromDate.getTime(), Date.UTC(2060, 4, 31, 23));
    assert.equal(lx.validToDate.getTime(), Date.UTC(2160, 5, 1));
    assert.ok(hex(late.certDer).includes(hex(Buffer.from('20600531230000Z'))));
  });

  test('site id is base32(sha256(der)), stable, and different per certificate', () => {
    const digest = createHash('sha256').update(ident.certDer).digest();
    assert.equal(ident.id, refBase32(digest));
    assert.equal(ident.id.length, 52);
    assert.match(ident.id, /^[A-Z2-7]{51}[AQ]$/);
    assert.equal(siteIdFromCert(ident.certDer), ident.id);
    assert.equal(siteIdFromCert(Buffer.from(ident.certDer)), ident.id);
    assert.equal(x509.fingerprint256.replaceAll(':', '').toLowerCase(), hex(digest));
    assert.notEqual(A.id, B.id);
  });

  test('site names are validated', () => {
    assert.throws(() => createIdentity('bad name/../x'), ferryCode('USAGE'));
    const long = createIdentity('x'.repeat(128));
    assert.equal(new X509Certificate(long.certDer).subject, 'O=ferry\nCN=ferry site ' + 'x'.repeat(53));
  });
});

// ---------------------------------------------------------------------------
// mutual TLS with pinning

interface Pinned {
  port: number;
  /** errors the server raised while checking peers */
  refused: FerryError[];
  /** peer ids the server accepted */
  accepted: string[];
  close(): Promise<void>;
}

/** A line-based echo server that accepts only `allowed` peers. */
function startTlsServer(ident: SiteIdentity, allowed: Set<string>): Promise<Pinned> {
  const refused: FerryError[] = [];
  const accepted: string[] = [];
  const server = tls.createServer({ ...tlsOptionsFor(ident), requestCert: true, rejectUnauthorized: false }, (sock) => {
    sock.on('error', () => {});
    let peer: string;
    try {
      peer = verifyPeerCertificate(sock.getPeerCertificate(true).raw, allowed);
    } catch (err) {
      refused.push(err as FerryError);
      sock.end(JSON.stringify({ error: (err as FerryError).toJSON() }) + '\n');
      sock.resume(); // read on to the client's end, or the socket never closes
      return;
    }
    accepted.push(peer);
    sock.setEncoding('utf8');
    sock.once('data', (line: string) => sock.end(`hello ${peer}, you said ${line.trim()}\n`));
  });
  return new Promise((resolve) => {
    server.listen(0, '127.0.0.1', () => {
      resolve({
        port: (server.address() as AddressInfo).port,
        refused,
        accepted,
        close: () => new Promise((r) => server.close(() => r())),
      });
    });
  });
}

/** Connect as `ident` (or with no certificate), pin `serverIds`, send one line, return what came back. */
function tlsTalk(port: number, ident: SiteIdentity | null, serverIds: Set<string>): Promise<string> {
  return new Promise((resolve, reject) => {
    const sock = tls.connect({ host: '127.0.0.1', port, ...(ident ? tlsOptionsFor(ident) : {}), rejectUnauthorized: false });
    let got = '';
    sock.setEncoding('utf8');
    sock.on('error', reject);
    sock.on('secureConnect', () => {
      try {
        verifyPeerCertificate(sock.getPeerCertificate(true).raw, serverIds);
      } catch (err) {
        sock.destroy();
        reject(err);
        return;
      }
      sock.write('ping\n');
    });
    sock.on('data', (d: string) => (got += d));
    sock.on('end', () => resolve(got));
  });
}

describe('mutual TLS with pinned site ids', () => {
  let server: Pinned;
  before(async () => {
    server = await startTlsServer(A, new Set([B.id]));
  });
  after(() => server.close());

  test('paired sites connect and exchange a message', async () => {
    const reply = await tlsTalk(server.port, B, new Set([A.id]));
    assert.equal(reply, `hello ${B.id}, you said ping\n`);
    assert.deepEqual(server.accepted, [B.id]);
  });

  test('an unpaired client is refused with a clear error', async () => {
    const reply = await tlsTalk(server.port, C, new Set([A.id]));
    const { error } = JSON.parse(reply);
    assert.equal(error.code, 'PEER_UNTRUSTED');
    assert.ok(error.message.includes(formatSiteId(C.id)), error.message);
    assert.ok(error.message.includes(`ferry site add NAME URL --id ${formatSiteId(C.id)}`), error.message);
    assert.equal(error.details.peerId, C.id);
    assert.equal(server.refused.at(-1)?.code, 'PEER_UNTRUSTED');
    assert.ok(!server.accepted.includes(C.id));
  });

  test('a client without a certificate is refused', async () => {
    const reply = await tlsTalk(server.port, null, new Set([A.id]));
    const { error } = JSON.parse(reply);
    assert.equal(error.code, 'PEER_UNTRUSTED');
    assert.match(error.message, /no TLS certificate/);
  });

  test('a client pinning another id refuses the server', async () => {
    const before = server.accepted.length;
    await assert.rejects(tlsTalk(server.port, B, new Set([C.id])), ferryCode('PEER_UNTRUSTED', formatSiteId(A.id), 'ferry site add'));
    // the server accepted B (it is paired) but never got a message from it
    await new Promise((r) => setTimeout(r, 50));
    assert.ok(server.accepted.length <= before + 1);
  });
});

describe('HTTP/2 with pinned site ids', () => {
  let server: http2.Http2SecureServer;
  let port: number;
  before(async () => {
    server = http2.createSecureServer({ ...tlsOptionsFor(A), requestCert: true, rejectUnauthorized: false });
    server.on('stream', (stream) => {
      const sock = stream.session?.socket as tls.TLSSocket;
      try {
        const peer = verifyPeerCertificate(sock.getPeerCertificate(true).raw, new Set([B.id]));
        stream.respond({ ':status': 200, 'content-type': 'application/json' });
        stream.end(JSON.stringify({ peer }));
      } catch (err) {
        stream.respond({ ':status': 403, 'content-type': 'application/json' });
        stream.end(JSON.stringify({ error: (err as FerryError).toJSON() }));
      }
    });
    await new Promise<void>((r) => server.listen(0, '127.0.0.1', () => r()));
    port = (server.address() as AddressInfo).port;
  });
  after(() => new Promise<void>((r) => server.close(() => r())));

  function h2Get(ident: SiteIdentity, serverIds: Set<string>): Promise<{ status: number; body: any }> {
    return new Promise((resolve, reject) => {
      const session = http2.connect(`https://127.0.0.1:${port}`, { ...tlsOptionsFor(ident), rejectUnauthorized: false });
      session.on('error', reject);
      session.on('connect', (_s, socket) => {
        try {
          verifyPeerCertificate((socket as tls.TLSSocket).getPeerCertificate(true).raw, serverIds);
        } catch (err) {
          session.destroy();
          reject(err);
          return;
        }
        const req = session.request({ ':path': '/v1/hello' });
        let status = 0;
        let body = '';
        req.setEncoding('utf8');
        req.on('response', (h) => (status = Number(h[':status'])));
        req.on('data', (d: string) => (body += d));
        req.on('end', () => {
          session.close();
          resolve({ status, body: JSON.parse(body) });
        });
        req.on('error', reject);
        req.end();
      });
    });
  }

  test('paired peers talk', async () => {
    const res = await h2Get(B, new Set([A.id]));
    assert.equal(res.status, 200);
    assert.equal(res.body.peer, B.id);
  });

  test('an unpaired client gets 403 PEER_UNTRUSTED naming its id', async () => {
    const res = await h2Get(C, new Set([A.id]));
    assert.equal(res.status, 403);
    assert.equal(res.body.error.code, 'PEER_UNTRUSTED');
    assert.ok(res.body.error.message.includes(`--id ${formatSiteId(C.id)}`));
  });

  test('a client pinning another id refuses the server', async () => {
    await assert.rejects(h2Get(B, new Set([C.id])), ferryCode('PEER_UNTRUSTED', formatSiteId(A.id)));
  });
});

// ---------------------------------------------------------------------------
// files

describe('saveIdentity / loadIdentity', () => {
  let tmp: string;
  before(() => {
    tmp = fs.mkdtempSync(path.join(os.tmpdir(), 'ferry-identity-'));
  });
  after(() => fs.rmSync(tmp, { recursive: true, force: true }));

  function freshDir(name: string): string {
    return path.join(tmp, name);
  }

  test('round trip with modes, no temp files left', () => {
    const dir = freshDir('rt');
    saveIdentity(dir, A);
    assert.deepEqual(fs.readdirSync(dir).sort(), ['cert.pem', 'key.pem']);
    assert.equal(fs.statSync(path.join(dir, 'key.pem')).mode & 0o777, 0o600);
    assert.equal(fs.statSync(path.join(dir, 'cert.pem')).mode & 0o777, 0o644);
    const loaded = loadIdentity(dir);
    assert.equal(loaded.id, A.id);
    assert.ok(loaded.certDer.equals(A.certDer));
    assert.equal(loaded.keyPem, A.keyPem);
    assert.equal(loaded.certPem, A.certPem);
  });

  test('refuses to overwrite', () => {
    const dir = freshDir('rt');
    assert.throws(() => saveIdentity(dir, B), ferryCode('IDENTITY_EXISTS', 'never overwrites'));
    assert.equal(loadIdentity(dir).id, A.id);
    const half = freshDir('half');
    fs.mkdirSync(half);
    fs.writeFileSync(path.join(half, 'key.pem'), A.keyPem);
    assert.throws(() => saveIdentity(half, A), ferryCode('IDENTITY_EXISTS', 'interrupted'));
    assert.deepEqual(fs.readdirSync(half), ['key.pem']);
  });

  function dirWith(name: string, key: string | null, cert: string | null): string {
    const dir = freshDir(name);
    fs.mkdirSync(dir);
    if (key !== null) fs.writeFileSync(path.join(dir, 'key.pem'), key);
    if (cert !== null) fs.writeFileSync(path.join(dir, 'cert.pem'), cert);
    return dir;
  }

  test('mismatched key and certificate are detected', () => {
    const dir = dirWith('mismatch', B.keyPem, A.certPem);
    assert.throws(() => loadIdentity(dir), ferryCode('IDENTITY_INVALID', 'do not belong together', 'restore'));
  });

  test('missing files say what to do', () => {
    assert.throws(() => loadIdentity(dirWith('nokey', null, A.certPem)), ferryCode('IDENTITY_INVALID', 'key.pem is missing', 're-pair'));
    assert.throws(() => loadIdentity(dirWith('nocert', A.keyPem, null)), ferryCode('IDENTITY_INVALID', 'cert.pem is missing'));
  });

  test('corrupt PEM gives a clear error', () => {
    assert.throws(() => loadIdentity(dirWith('badcert', A.keyPem, 'hello\n')), ferryCode('IDENTITY_INVALID', 'cert.pem is not a PEM certificate'));
    const lines = A.certPem.split('\n');
    const truncated = [...lines.slice(0, 4), lines.at(-2)!, ''].join('\n');
    assert.throws(() => loadIdentity(dirWith('truncert', A.keyPem, truncated)), ferryCode('IDENTITY_INVALID', 'cert.pem is not a PEM certificate'));
    assert.throws(() => loadIdentity(dirWith('badkey', 'garbage', A.certPem)), ferryCode('IDENTITY_INVALID', 'key.pem cannot be used'));
    const keyLines = A.keyPem.split('\n');
    keyLines[2] = keyLines[2].replace(/[A-Za-z]/, (c) => (c === 'A' ? 'B' : 'A'));
    assert.throws(() => loadIdentity(dirWith('flipkey', keyLines.join('\n'), A.certPem)), ferryCode('IDENTITY_INVALID'));
  });

  test('a certificate altered after signing is refused', () => {
    // rename issuer and subject alike, so only the signature gives it away
    const forged = Buffer.from(A.certDer);
    const cn = Buffer.from('ferry site alpha');
    let n = 0;
    for (let i = forged.indexOf(cn); i >= 0; i = forged.indexOf(cn, i + 1), n++) forged[i + 'ferry site '.length] = 'A'.charCodeAt(0);
    assert.equal(n, 2);
    const pem = `-----BEGIN CERTIFICATE-----\n${forged.toString('base64').match(/.{1,64}/g)!.join('\n')}\n-----END CERTIFICATE-----\n`;
    assert.equal(new X509Certificate(pem).subject, 'O=ferry\nCN=ferry site Alpha');
    assert.throws(() => loadIdentity(dirWith('forged', A.keyPem, pem)), ferryCode('IDENTITY_INVALID', 'signature does not verify'));
  });
});

// ---------------------------------------------------------------------------
// site ids as people type them

describe('parseSiteId / formatSiteId', () => {
  test('format groups by 4 and parse accepts every human form', () => {
    const shown = formatSiteId(A.id);
    assert.match(shown, /^[A-Z2-7]{4}(-[A-Z2-7]{4}){12}$/);
    assert.equal(shown.replaceAll('-', ''), A.id);
    assert.equal(parseSiteId(shown), A.id);
    assert.equal(parseSiteId(shown.toLowerCase()), A.id);
    assert.equal(parseSiteId(A.id), A.id);
    assert.equal(parseSiteId(A.id.toLowerCase()), A.id);
    assert.equal(parseSiteId(`  ${shown.replaceAll('-', ' ')}\n`), A.id);
    assert.equal(parseSiteId(A.id.match(/.{1,7}/g)!.join('-')), A.id); // groups of 7 too
    assert.equal(formatSiteId(shown.toLowerCase()), shown);
  });

  test('wrong length, alphabet or last character is a USAGE error with a hint', () => {
    assert.throws(() => parseSiteId(A.id.slice(0, 51)), ferryCode('USAGE', '51 characters', '52 characters of A-Z and 2-7'));
    assert.throws(() => parseSiteId(A.id + 'A'), ferryCode('USAGE', '53 characters'));
    assert.throws(() => parseSiteId(''), ferryCode('USAGE', '0 characters'));
    assert.throws(() => parseSiteId('0' + A.id.slice(1)), ferryCode('USAGE', '"0"', '0 is probably O'));
    assert.throws(() => parseSiteId(A.id.slice(0, 10) + '!' + A.id.slice(11)), ferryCode('USAGE', '"!"'));
    assert.throws(() => parseSiteId(A.id.slice(0, 51) + 'B'), ferryCode('USAGE', 'last character'));
  });

  test('verifyPeerCertificate returns the id of a pinned peer', () => {
    assert.equal(verifyPeerCertificate(B.certDer, new Set([A.id, B.id])), B.id);
    assert.throws(() => verifyPeerCertificate(B.certDer, new Set()), ferryCode('PEER_UNTRUSTED', formatSiteId(B.id)));
    assert.throws(() => verifyPeerCertificate(undefined, new Set([B.id])), ferryCode('PEER_UNTRUSTED', 'no TLS certificate'));
  });
});

// ---------------------------------------------------------------------------
// DER encoder on fixed inputs

describe('DER encoder', () => {
  const h = (b: Buffer) => b.toString('hex');

  test('INTEGER: minimal two\'s complement, high bit gets a 0x00', () => {
    assert.equal(h(der.integer(0)), '020100');
    assert.equal(h(der.integer(127)), '02017f');
    assert.equal(h(der.integer(128)), '02020080');
    assert.equal(h(der.integer(256)), '02020100');
    assert.equal(h(der.integer(-1)), '0201ff');
    assert.equal(h(der.integer(-128)), '020180');
    assert.equal(h(der.integer(-129)), '0202ff7f');
    assert.equal(h(der.integer(2n ** 64n)), '0209010000000000000000');
    assert.equal(h(der.integer(Buffer.from([0x80, 0x01]))), '0203008001');
    assert.equal(h(der.integer(Buffer.from([0x00, 0x00, 0x12]))), '020112');
    assert.equal(h(der.integer(Buffer.from([0x00, 0x00, 0xff]))), '020200ff');
    assert.equal(h(der.integer(Buffer.alloc(0))), '020100');
  });

  test('lengths: short form below 128, long form from 128 and from 256', () => {
    assert.equal(h(der.length(0)), '00');
    assert.equal(h(der.length(127)), '7f');
    assert.equal(h(der.length(128)), '8180');
    assert.equal(h(der.length(255)), '81ff');
    assert.equal(h(der.length(256)), '820100');
    assert.equal(h(der.length(65535)), '82ffff');
    assert.equal(h(der.length(65536)), '83010000');
    const o200 = der.octetString(Buffer.alloc(200, 0xab));
    assert.equal(h(o200.subarray(0, 3)), '0481c8');
    assert.equal(o200.length, 203);
    const o300 = der.octetString(Buffer.alloc(300, 0xab));
    assert.equal(h(o300.subarray(0, 4)), '0482012c');
    assert.equal(o300.length, 304);
    assert.equal(h(der.sequence(o300).subarray(0, 4)), '30820130');
  });

  test('OID, strings, times, BOOLEAN, BIT STRING, NULL, SET OF, context tags', () => {
    assert.equal(h(der.oid('1.2.840.10045.4.3.2')), '06082a8648ce3d040302');
    assert.equal(h(der.oid('2.5.29.19')), '0603551d13');
    assert.equal(h(der.oid('1.3.6.1.5.5.7.3.1')), '06082b06010505070301');
    assert.equal(h(der.oid('2.999.3')), '0603883703');
    assert.equal(h(der.utf8String('é')), '0c02c3a9');
    assert.equal(h(der.printableString('ferry')), '13056665727279');
    assert.throws(() => der.printableString('a@b'));
    assert.equal(h(der.ia5String('ferry')), '16056665727279');
    assert.equal(der.utcTime(new Date(Date.UTC(2049, 11, 31, 23, 59, 59))).subarray(2).toString(), '491231235959Z');
    assert.equal(h(der.time(new Date(Date.UTC(2049, 11, 31, 23, 59, 59))).subarray(0, 2)), '170d');
    assert.equal(h(der.time(new Date(Date.UTC(2050, 0, 1))).subarray(0, 2)), '180f');
    assert.equal(der.time(new Date(Date.UTC(2050, 0, 1))).subarray(2).toString(), '20500101000000Z');
    assert.throws(() => der.utcTime(new Date(Date.UTC(2050, 0, 1))));
    assert.equal(h(der.boolean(true)), '0101ff');
    assert.equal(h(der.boolean(false)), '010100');
    assert.equal(h(der.bitString(Buffer.from([0x80]), 7)), '03020780');
    assert.equal(h(der.bitString(Buffer.from([1, 2]))), '0303000102');
    assert.equal(h(der.null()), '0500');
    assert.equal(h(der.sequence()), '3000');
    assert.equal(h(der.setOf(der.integer(2), der.integer(1))), '3106020101020102');
    assert.equal(h(der.explicit(0, der.integer(2))), 'a003020102');
    assert.equal(h(der.explicit(3, der.sequence())), 'a3023000');
    assert.equal(h(der.implicitPrimitive(2, Buffer.from('ferry'))), '82056665727279');
  });
});
