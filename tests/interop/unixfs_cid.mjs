#!/usr/bin/env node
// Print, one per line, the root CID that `ipfs add --cid-version=1` gives each
// file named on the command line, computed by the reference js importer
// (ipfs-unixfs-importer) with every layout option spelled out, so that a
// change of the library's defaults cannot silently change what we compare to.
//
//   node unixfs_cid.mjs [--car-dir DIR] [--chunk-size N] [--max-links N] FILE...
//
// With --car-dir, also write DIR/<n>.car (n = 0-based position of the file on
// the command line): a CARv1 with the root CID as its only root and every
// block of the file's DAG, written by @ipld/car, so the Python CAR decoder can
// be checked on a CAR it did not write itself.
//
// --chunk-size and --max-links (defaults 262144 and 174, those of `ipfs add`)
// exist to build deep trees from small files; other values give CIDs that
// `ipfs add` would not.

import { createReadStream, createWriteStream } from 'node:fs'
import { join } from 'node:path'
import { Readable } from 'node:stream'
import { pipeline } from 'node:stream/promises'

import { CarWriter } from '@ipld/car'
import { MemoryBlockstore } from 'blockstore-core'
import { importFile } from 'ipfs-unixfs-importer'
import { fixedSize } from 'ipfs-unixfs-importer/chunker'
import { balanced } from 'ipfs-unixfs-importer/layout'

// `ipfs add --cid-version=1` (kubo) defaults.
function importOptions (chunkSize = 262144, maxLinks = 174) {
  return {
    cidVersion: 1,
    rawLeaves: true,
    reduceSingleLeafToSelf: true,
    chunker: fixedSize({ chunkSize }),
    layout: balanced({ maxChildrenPerNode: maxLinks }),
    wrapWithDirectory: false
  }
}

function positiveInteger (text, flag) {
  const value = Number(text)
  if (!Number.isSafeInteger(value) || value < 1) {
    throw new Error(`${flag} needs a positive integer, got ${text}`)
  }
  return value
}

/** A blockstore that also remembers the blocks in the order they were put. */
class RecordingBlockstore extends MemoryBlockstore {
  constructor () {
    super()
    this.blocks = new Map()
  }

  put (cid, bytes, options) {
    if (bytes instanceof Uint8Array) {
      this.blocks.set(cid.toString(), { cid, bytes })
    }
    return super.put(cid, bytes, options)
  }
}

async function writeCar (path, root, blocks) {
  const { writer, out } = CarWriter.create([root])
  const written = pipeline(Readable.from(out), createWriteStream(path))
  for (const block of blocks.values()) {
    await writer.put(block)
  }
  await writer.close()
  await written
}

async function main (argv) {
  let carDir = null
  let chunkSize
  let maxLinks
  const files = []
  for (let i = 0; i < argv.length; i++) {
    if (argv[i] === '--car-dir') {
      carDir = argv[++i]
    } else if (argv[i] === '--chunk-size') {
      chunkSize = positiveInteger(argv[++i], '--chunk-size')
    } else if (argv[i] === '--max-links') {
      maxLinks = positiveInteger(argv[++i], '--max-links')
    } else {
      files.push(argv[i])
    }
  }
  if (files.length === 0 || carDir === undefined) {
    process.stderr.write('usage: node unixfs_cid.mjs [--car-dir DIR] [--chunk-size N] [--max-links N] FILE...\n')
    process.exit(2)
  }
  const options = importOptions(chunkSize, maxLinks)
  for (const [index, file] of files.entries()) {
    const blockstore = new RecordingBlockstore()
    const entry = await importFile({ content: createReadStream(file) }, blockstore, options)
    if (carDir !== null) {
      await writeCar(join(carDir, `${index}.car`), entry.cid, blockstore.blocks)
    }
    process.stdout.write(`${entry.cid.toString()}\n`)
  }
}

await main(process.argv.slice(2))
