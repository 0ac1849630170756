// Node 20 lacks Promise.withResolvers (Node >= 22 has it), which libp2p 3
// uses. Load with `node --import ./polyfill.mjs script.mjs`.
if (typeof Promise.withResolvers !== 'function') {
  Promise.withResolvers = function withResolvers () {
    let resolve
    let reject
    const promise = new this((resolvePromise, rejectPromise) => {
      resolve = resolvePromise
      reject = rejectPromise
    })
    return { promise, resolve, reject }
  }
}
