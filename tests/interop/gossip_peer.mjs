#!/usr/bin/env node
// A js-libp2p node (TCP, Noise, Yamux, identify, GossipSub) that talks to a
// remixnet daemon the way any other implementation would: from
// docs/protocol.md alone.
//
//   node --import ./polyfill.mjs gossip_peer.mjs --dial MULTIADDR [--seconds N]
//
// It dials the daemon, subscribes to the announce topic and prints one JSON
// line per event on stdout:
//
//   {"event":"ready","peer_id":…}                 listening, before dialling
//   {"event":"connected","peer_id":…}             the dial succeeded
//   {"event":"topic-peers","count":N}             peers subscribed to the announce topic
//   {"event":"message","valid":true,"id":…,"author":…,"type":…,"body":{…},
//    "signature_valid":true,"from":…}             an announcement, decoded and
//                                                 verified here (Ed25519, node:crypto)
//   {"event":"message","valid":false,"reason":…}  one that failed the checks
//   {"event":"published","kind":…,"id":…,"recipients":N}
//   {"event":"error","message":…}
//
// Commands, one JSON object per line on stdin: {"publish": KIND} with KIND one
// of "valid" (a profile signed here by a fresh key), "bad-signature" (the same
// with one signature bit flipped), "non-canonical" (a correctly signed record
// whose version is written as uint 8), "random" (200 random bytes);
// {"stop": true}. It exits on stop, when stdin closes, or after --seconds
// (default 120).

import { randomBytes } from 'node:crypto'
import { createInterface } from 'node:readline'

import { noise } from '@chainsafe/libp2p-noise'
import { yamux } from '@chainsafe/libp2p-yamux'
import { gossipsub } from '@libp2p/gossipsub'
import { identify } from '@libp2p/identify'
import { tcp } from '@libp2p/tcp'
import { multiaddr } from '@multiformats/multiaddr'
import { createLibp2p } from 'libp2p'

import { decodeRecord, newIdentity, recordId, recordIdBytes, signRecord } from './record.mjs'

const ANNOUNCE_TOPIC = '/remixnet/announce/1'

function print (object) {
  process.stdout.write(JSON.stringify(object) + '\n')
}

function option (name, fallback) {
  const index = process.argv.indexOf(name)
  return index >= 0 ? process.argv[index + 1] : fallback
}

// A JSON view of a record body: bytes as hex.
function jsonBody (body) {
  return JSON.parse(JSON.stringify(body, (key, value) =>
    (value && value.type === 'Buffer') || value instanceof Uint8Array ? Buffer.from(value.data ?? value).toString('hex') : value))
}

const dial = option('--dial')
const seconds = Number(option('--seconds', '120'))
if (!dial) {
  process.stderr.write('gossip_peer: --dial MULTIADDR is required\n')
  process.exit(2)
}

const node = await createLibp2p({
  addresses: { listen: ['/ip4/127.0.0.1/tcp/0'] },
  transports: [tcp()],
  connectionEncrypters: [noise()],
  streamMuxers: [yamux()],
  services: {
    identify: identify(),
    pubsub: gossipsub({
      // docs/protocol.md, "Announcements": the message id is the record id
      // (binary CIDv1 of the data), followed on other topics than the announce
      // topic by the topic's name; messages are signed by the sender (StrictSign).
      msgIdFn: (message) => message.topic === ANNOUNCE_TOPIC
        ? recordIdBytes(message.data)
        : new Uint8Array(Buffer.concat([recordIdBytes(message.data), Buffer.from(message.topic, 'utf8')])),
      globalSignaturePolicy: 'StrictSign',
      emitSelf: false,
      allowPublishToZeroTopicPeers: false
    })
  }
})
const pubsub = node.services.pubsub
print({ event: 'ready', peer_id: node.peerId.toString() })

pubsub.addEventListener('message', (event) => {
  const message = event.detail
  const from = message.type === 'signed' ? message.from.toString() : null
  const seen = { event: 'message', topic: message.topic, from, id: recordId(message.data), size: message.data.length }
  try {
    const { record, id, author } = decodeRecord(message.data)
    print({ ...seen, valid: true, id, author, type: record.t, created_ms: record.ts, body: jsonBody(record.b), signature_valid: true })
  } catch (error) {
    print({ ...seen, valid: false, reason: error.reason ?? 'error', detail: error.message })
  }
})
pubsub.addEventListener('subscription-change', () => {
  print({ event: 'topic-peers', count: pubsub.getSubscribers(ANNOUNCE_TOPIC).length })
})
pubsub.subscribe(ANNOUNCE_TOPIC)

const identity = newIdentity()
let published = 0

// The bytes of a record of kind `kind` (see the header).
function makeMessage (kind) {
  published += 1
  const profile = () => signRecord(identity, 'profile', { n: `js peer ${published}` }, Date.now())
  if (kind === 'valid') return profile()
  if (kind === 'bad-signature') {
    const bytes = Buffer.from(profile())
    // The record map starts 86 a1 61 c4 20 <32> a1 62 <body> a1 73 c4 40 <64>:
    // find the signature entry and flip one bit in it.
    const at = bytes.indexOf(Buffer.from('a173c440', 'hex'), 37) + 4
    bytes[at + 10] ^= 0x01
    return bytes
  }
  if (kind === 'non-canonical') {
    const bytes = Buffer.from(profile())
    // "v": 1 is a1 76 01 at the end; write 1 as uint 8 (cc 01) instead. The
    // signature still verifies (it covers the canonical unsigned map).
    if (!bytes.subarray(-3).equals(Buffer.from('a17601', 'hex'))) throw new Error('unexpected layout')
    return Buffer.concat([bytes.subarray(0, -1), Buffer.from([0xcc, 0x01])])
  }
  if (kind === 'random') return randomBytes(200)
  throw new Error(`unknown kind ${kind}`)
}

async function handle (line) {
  if (line.trim() === '') return
  const command = JSON.parse(line)
  if (command.stop) return stop(0)
  if (command.publish) {
    const data = makeMessage(command.publish)
    const result = await pubsub.publish(ANNOUNCE_TOPIC, data)
    print({ event: 'published', kind: command.publish, id: recordId(data), recipients: result.recipients.length })
  }
}

let stopping = false
async function stop (code) {
  if (stopping) return
  stopping = true
  clearTimeout(timer)
  await node.stop()
  process.exit(code)
}
const timer = setTimeout(() => {
  print({ event: 'error', message: `stopping after ${seconds} s` })
  stop(1)
}, seconds * 1000)

const input = createInterface({ input: process.stdin })
input.on('line', (line) => {
  handle(line).catch((error) => print({ event: 'error', message: String(error?.message ?? error) }))
})
input.on('close', () => stop(0))

try {
  const connection = await node.dial(multiaddr(dial))
  print({ event: 'connected', peer_id: connection.remotePeer.toString() })
} catch (error) {
  print({ event: 'error', message: `cannot dial ${dial}: ${error.message}` })
  await stop(1)
}
