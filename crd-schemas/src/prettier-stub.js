// json-schema-to-typescript loads prettier at import time, and prettier 3 needs dynamic import(),
// which jest's CommonJS runtime refuses. The generator runs with `format: false`, so under jest a
// stand-in that is never called is enough.
module.exports = {};
