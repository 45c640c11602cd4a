#!/usr/bin/env node
// The compiled entry; `npm install` builds it (the `prepare` script).
import { main } from '../dist/src/cli/main.js';

main(process.argv.slice(2));
