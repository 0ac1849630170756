#!/usr/bin/env node
// Check record.mjs (records written from docs/protocol.md alone) against the
// spec's own test vectors: every vector must decode, verify and give the
// stated record id and author id; a copy with one signature bit flipped must
// fail with bad-signature, and one with the version written as uint 8 with
// non-canonical.
//
//   node record_vectors.mjs PATH/TO/protocol.md
//
// Prints one JSON line per vector: {"name", "id", "author", "expected_id",
// "expected_author", "flipped", "non_canonical"} (the last two: the reasons).

import { readFileSync } from 'node:fs'

import { decodeRecord } from './record.mjs'

function reasonOf (bytes) {
  try {
    decodeRecord(bytes)
    return 'accepted'
  } catch (error) {
    return error.reason ?? String(error)
  }
}

const text = readFileSync(process.argv[2], 'utf8')
for (const match of text.matchAll(/```vector\n([\s\S]*?)```/g)) {
  const block = match[1]
  const field = (name) => new RegExp(`^${name}: (.*)$`, 'm').exec(block)?.[1]
  const encoded = /^encoded:\n((?: {2}[0-9a-f]+\n)+)/m.exec(block)
  if (!encoded) continue
  const bytes = Buffer.from(encoded[1].replace(/\s+/g, ''), 'hex')
  const { id, author, record } = decodeRecord(bytes)
  const flipped = Buffer.from(bytes)
  flipped[bytes.indexOf(Buffer.from('a173c440', 'hex'), 37) + 4] ^= 0x01
  const nonCanonical = Buffer.concat([bytes.subarray(0, -1), Buffer.from([0xcc, 0x01])])
  process.stdout.write(JSON.stringify({
    name: field('name'),
    type: record.t,
    id,
    author,
    expected_id: field('id'),
    expected_author: field('author'),
    flipped: reasonOf(flipped),
    non_canonical: reasonOf(nonCanonical)
  }) + '\n')
}
