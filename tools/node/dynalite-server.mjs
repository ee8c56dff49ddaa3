// dynalite-server.mjs starts dynalite (a DynamoDB-compatible server, in
// memory) on 127.0.0.1 and a free port, prints one JSON line
// {"endpoint":"http://127.0.0.1:PORT"} on stdout once it listens, and exits
// when its stdin closes (so it never outlives the test that started it) or on
// SIGTERM/SIGINT.
//
//   node tools/node/dynalite-server.mjs [--port N]
//
// Tables become ACTIVE at once (createTableMs etc. are 0), which keeps tests fast.
import { createRequire } from 'node:module'

const require = createRequire(import.meta.url)
const dynalite = require('dynalite')

const i = process.argv.indexOf('--port')
const port = i >= 0 ? Number(process.argv[i + 1]) : 0
if (!Number.isInteger(port) || port < 0 || port > 65535) {
  console.error('dynalite-server: --port must be an integer in 0..65535')
  process.exit(2)
}

const server = dynalite({ createTableMs: 0, deleteTableMs: 0, updateTableMs: 0 })
server.on('error', (err) => {
  console.error(`dynalite-server: ${err.message}`)
  process.exit(1)
})
server.listen(port, '127.0.0.1', () => {
  const { port: p } = server.address()
  process.stdout.write(JSON.stringify({ endpoint: `http://127.0.0.1:${p}` }) + '\n')
})

const stop = () => process.exit(0)
process.stdin.on('end', stop)
process.stdin.on('close', stop)
process.stdin.resume()
process.on('SIGTERM', stop)
process.on('SIGINT', stop)
