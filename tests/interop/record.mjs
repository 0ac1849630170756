// remixnet records (docs/protocol.md, "Records") written from the spec alone:
// canonical msgpack, the Ed25519 signature over the domain prefix and the
// unsigned map, the record id (CIDv1 raw sha2-256) and the author id (PeerID).
// Used by gossip_peer.mjs to check what a remixnet daemon announces and to
// make records (valid and invalid) of its own.

import { createHash, createPrivateKey, createPublicKey, generateKeyPairSync, sign, verify } from 'node:crypto'

import { decode, encode } from '@msgpack/msgpack'

// "remixnet/record/v1" followed by one zero byte.
export const SIGNING_PREFIX = Buffer.concat([Buffer.from('remixnet/record/v1', 'ascii'), Buffer.from([0])])
export const MAX_RECORD_SIZE = 65536
const RECORD_KEYS = ['a', 'b', 's', 't', 'ts', 'v']
const TYPES = new Set(['profile', 'contribution', 'collab', 'production', 'ack'])
// DER SubjectPublicKeyInfo header of an Ed25519 key (RFC 8410); the raw key follows.
const ED25519_SPKI_PREFIX = Buffer.from('302a300506032b6570032100', 'hex')

export class InvalidRecord extends Error {
  constructor (reason, detail = '') {
    super(`${reason}${detail ? ': ' + detail : ''}`)
    this.reason = reason
  }
}

// The canonical encoding: sorted keys (all record keys are ASCII, so
// JavaScript's sort is the spec's bytewise order) and msgpack's shortest forms,
// which @msgpack/msgpack always writes for integers, str, bin, arrays and maps.
export function canonicalEncode (value) {
  return Buffer.from(encode(value, { sortKeys: true, forceIntegerToFloat: false }))
}

function isBytes (value, length) {
  return value instanceof Uint8Array && value.length === length
}

// Decode and check a signed record; returns { record, id, author, signingInput }.
// Throws InvalidRecord(reason) as the spec's "Decoding" section orders them
// (this peer checks the record map, canonical form and signature; body schemas
// are checked only as far as printing a contribution needs).
export function decodeRecord (bytes) {
  bytes = Buffer.from(bytes)
  if (bytes.length > MAX_RECORD_SIZE) throw new InvalidRecord('too-large')
  let record
  try {
    record = decode(bytes)
  } catch (error) {
    throw new InvalidRecord('not-msgpack', error.message)
  }
  if (record === null || typeof record !== 'object' || Array.isArray(record) || record instanceof Uint8Array) {
    throw new InvalidRecord('wrong-type', 'not a map')
  }
  if (!('v' in record)) throw new InvalidRecord('missing-field', 'v')
  if (record.v !== 1) throw new InvalidRecord('unknown-version', String(record.v))
  for (const key of Object.keys(record)) {
    if (!RECORD_KEYS.includes(key)) throw new InvalidRecord('extra-field', key)
  }
  for (const key of RECORD_KEYS) {
    if (!(key in record)) throw new InvalidRecord('missing-field', key)
  }
  if (typeof record.t !== 'string') throw new InvalidRecord('wrong-type', 't')
  if (!TYPES.has(record.t)) throw new InvalidRecord('unknown-type', record.t)
  if (!isBytes(record.a, 32)) throw new InvalidRecord('wrong-type', 'a')
  if (!isBytes(record.s, 64)) throw new InvalidRecord('wrong-type', 's')
  if (!Number.isSafeInteger(record.ts) || record.ts < 0) throw new InvalidRecord('wrong-type', 'ts')
  if (record.b === null || typeof record.b !== 'object' || Array.isArray(record.b) || record.b instanceof Uint8Array) {
    throw new InvalidRecord('wrong-type', 'b')
  }
  if (!canonicalEncode(record).equals(bytes)) throw new InvalidRecord('non-canonical')
  const signingInput = signingInputOf(record)
  if (!verify(null, signingInput, publicKeyFromRaw(record.a), Buffer.from(record.s))) {
    throw new InvalidRecord('bad-signature')
  }
  return { record, id: recordId(bytes), author: authorId(record.a), signingInput }
}

// The prefix, then the canonical map of a, b, t, ts, v (the record without s).
export function signingInputOf (record) {
  const { a, b, t, ts, v } = record
  return Buffer.concat([SIGNING_PREFIX, canonicalEncode({ a, b, t, ts, v })])
}

function publicKeyFromRaw (raw) {
  return createPublicKey({ key: Buffer.concat([ED25519_SPKI_PREFIX, raw]), format: 'der', type: 'spki' })
}

// A new Ed25519 identity: { privateKey, raw } (raw: the 32-byte public key).
export function newIdentity () {
  const { privateKey, publicKey } = generateKeyPairSync('ed25519')
  const raw = publicKey.export({ format: 'der', type: 'spki' }).subarray(ED25519_SPKI_PREFIX.length)
  return { privateKey: createPrivateKey(privateKey.export({ format: 'pem', type: 'pkcs8' })), raw }
}

// The signed, canonical encoding of a record of `type` with `body` by `identity`.
export function signRecord (identity, type, body, createdMs) {
  const unsigned = { a: identity.raw, b: body, t: type, ts: createdMs, v: 1 }
  const signature = sign(null, signingInputOf(unsigned), identity.privateKey)
  return canonicalEncode({ ...unsigned, s: signature })
}

// CIDv1, raw codec (0x55), sha2-256 multihash, base32 lower case with prefix "b".
export function recordId (bytes) {
  const digest = createHash('sha256').update(bytes).digest()
  return 'b' + base32(Buffer.concat([Buffer.from([0x01, 0x55, 0x12, 0x20]), digest]))
}

// The binary record id: the GossipSub message id of a message carrying `bytes`.
export function recordIdBytes (bytes) {
  const digest = createHash('sha256').update(bytes).digest()
  return new Uint8Array(Buffer.concat([Buffer.from([0x01, 0x55, 0x12, 0x20]), digest]))
}

// The libp2p PeerID of an Ed25519 key: base58btc of the identity multihash
// (00 24) of the protobuf PublicKey{Type: Ed25519, Data: key} (08 01 12 20 key).
export function authorId (raw) {
  return base58(Buffer.concat([Buffer.from([0x00, 0x24, 0x08, 0x01, 0x12, 0x20]), raw]))
}

export function base32 (bytes) {
  const alphabet = 'abcdefghijklmnopqrstuvwxyz234567'
  let bits = 0
  let value = 0
  let out = ''
  for (const byte of bytes) {
    value = (value << 8) | byte
    bits += 8
    while (bits >= 5) {
      out += alphabet[(value >>> (bits - 5)) & 31]
      bits -= 5
    }
  }
  if (bits > 0) out += alphabet[(value << (5 - bits)) & 31]
  return out
}

export function base58 (bytes) {
  const alphabet = '123456789ABCDEFGHJKLMNPQRSTUVWXYZabcdefghijkmnopqrstuvwxyz'
  let number = BigInt('0x' + (Buffer.from(bytes).toString('hex') || '0'))
  let out = ''
  while (number > 0n) {
    out = alphabet[Number(number % 58n)] + out
    number /= 58n
  }
  for (const byte of bytes) {
    if (byte !== 0) break
    out = '1' + out
  }
  return out
}
