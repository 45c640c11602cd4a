#!/usr/bin/env node
// The bundled CLI; `npm install` builds it (the `prepare` script, see scripts/bundle.mjs).
import { main } from '../dist/cli/main.js';

main(process.argv.slice(2));
