// Compiles each contract (escrow.tolk, registry.tolk) with the pinned @ton/tolk-js and
// writes its code cell to build/NAME.boc (raw BOC bytes, what Go embeds) and
// build/NAME.json (base64 BOC, code hash, compiler version).
//
// Usage: node compile.mjs            write build/
//        node compile.mjs --check    compile in memory; exit 1 if build/ differs
//
// The BOC is re-serialized by @ton/core with fixed options, so the bytes depend only on
// the code cell (and that only on the source and the pinned compiler version).
import { readFileSync, writeFileSync, mkdirSync } from 'node:fs';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { runTolkCompiler } from '@ton/tolk-js';
import { Cell } from '@ton/core';

const here = dirname(fileURLToPath(import.meta.url));
const contracts = ['escrow', 'registry'];
const buildDir = join(here, 'build');

/** Compiles NAME.tolk; returns {cell, files} where files maps build/ names to contents. */
async function compileContract(name) {
    const result = await runTolkCompiler({
        entrypointFileName: `${name}.tolk`,
        fsReadCallback: (path) => readFileSync(join(here, path), 'utf-8'),
    });
    if (result.status !== 'ok') {
        throw new Error(`tolk: ${result.message}`);
    }
    const cell = Cell.fromBoc(Buffer.from(result.codeBoc64, 'base64'))[0];
    const boc = cell.toBoc({ idx: false, crc32: true });
    const json = JSON.stringify({
        codeBoc64: boc.toString('base64'),
        codeHashHex: cell.hash().toString('hex'),
        tolkVersion: result.tolkVersion,
    }, null, 2) + '\n';
    return {
        cell,
        files: {
            [`${name}.boc`]: boc,
            [`${name}.json`]: Buffer.from(json),
        },
    };
}

function readOrNull(path) {
    try {
        return readFileSync(path);
    } catch (err) {
        if (err.code === 'ENOENT') return null;
        throw err;
    }
}

async function main(args) {
    if (args.length > 1 || (args.length === 1 && args[0] !== '--check')) {
        throw new Error(`usage: node compile.mjs [--check] (got ${args.join(' ')})`);
    }
    const check = args[0] === '--check';
    for (const name of contracts) {
        await build(name, check);
    }
}

/** Writes build/ for one contract, or with check, exits 1 if build/ differs. */
async function build(name, check) {
    const entrypoint = `${name}.tolk`;
    const { cell, files } = await compileContract(name);
    const hash = cell.hash().toString('hex');
    if (check) {
        const stale = Object.entries(files)
            .filter(([name, want]) => {
                const have = readOrNull(join(buildDir, name));
                return have === null || !have.equals(want);
            })
            .map(([name]) => `build/${name}`);
        if (stale.length > 0) {
            console.error(`contracts: ${stale.join(', ')} not reproducible from ${entrypoint} ` +
                `(source gives code hash ${hash}); run \`node settle/contracts/compile.mjs\` and commit build/`);
            process.exit(1);
        }
        console.log(`contracts: build/ matches ${entrypoint} (code hash ${hash})`);
        return;
    }
    mkdirSync(buildDir, { recursive: true });
    for (const [name, contents] of Object.entries(files)) {
        writeFileSync(join(buildDir, name), contents);
    }
    console.log(`contracts: wrote build/${name}.boc (${files[`${name}.boc`].length} bytes), ` +
        `build/${name}.json (code hash ${hash})`);
}

main(process.argv.slice(2)).catch((err) => {
    console.error(`contracts: ${err.message}`);
    process.exit(1);
});
