// Tests of the registry contract (build/registry.boc, the bytes Go embeds) on
// @ton/sandbox, against settle/REGISTRY.md: every operation's effect on state and
// balances, and every rejection with its exit code.
import { describe, test } from 'node:test';
import assert from 'node:assert/strict';
import { readFileSync } from 'node:fs';
import { Blockchain } from '@ton/sandbox';
import { beginCell, Cell, contractAddress, Dictionary, toNano } from '@ton/core';
import { keyPairFromSeed, sign } from '@ton/crypto';

const code = Cell.fromBoc(readFileSync(new URL('../build/registry.boc', import.meta.url)))[0];

const OP = {
    topUp: 0x52454700,
    register: 0x52454701,
    deregister: 0x52454702,
    withdraw: 0x52454703,
    propose: 0x52454710,
    cancel: 0x52454711,
    apply: 0x52454712,
    stakeReturned: 0x52454720,
};

const ERR = {
    wrongSender: 201,
    badSignature: 202,
    staleSeqno: 203,
    expired: 204,
    validityTooLong: 205,
    stakeTooSmall: 206,
    tooEarly: 207,
    nothingPending: 208,
    unknownHost: 209,
    notLeaving: 210,
    alreadyLeaving: 211,
    badEndpoint: 212,
    unknownOp: 65535,
};

const STATE = { active: 1, leaving: 2, withdrawn: 3 };

const FEE = toNano('0.05'); // REGISTRATION_FEE
const MIN_STAKE = toNano('10');
const GAS = toNano('0.05');
const FEE_BOUND = toNano('0.05'); // generous bound on what one round trip costs a wallet
const START = 1_800_000_000;
const CHANGE_DELAY = 86400;
const UNSTAKE_DELAY = 7 * 86400;
const MAX_VALIDITY = 3600;

const hostKeys = keyPairFromSeed(Buffer.alloc(32, 0x40));
const otherKeys = keyPairFromSeed(Buffer.alloc(32, 0x99));
const keyInt = (k) => BigInt('0x' + k.publicKey.toString('hex'));

// An allowlist as REGISTRY.md lays it out: HashmapE 264 (kind:uint8 ++ sha256(value))
// whose values are the raw bytes. The contract stores it opaquely; any cell will do here.
function allowlist(entries) {
    const d = Dictionary.empty(Dictionary.Keys.BigUint(264), Dictionary.Values.Buffer(32));
    for (const [kind, value] of entries) {
        d.set((BigInt(kind) << 256n) | BigInt('0x' + value.toString('hex')), value);
    }
    return beginCell().storeDictDirect(d).endCell();
}
const ALLOW_A = allowlist([[1, Buffer.alloc(32, 0xaa)]]);
const ALLOW_B = allowlist([[1, Buffer.alloc(32, 0xbb)], [3, Buffer.alloc(32, 0xcc)]]);
const ALLOW_C = allowlist([[1, Buffer.alloc(32, 0xdd)]]);

/** The initial data cell, laid out as in REGISTRY.md "Storage". */
function dataCell({ owner, nonce = 0n, initial = ALLOW_A, unstakeDelay = UNSTAKE_DELAY }) {
    const config = beginCell()
        .storeAddress(owner)
        .storeCoins(MIN_STAKE)
        .storeUint(CHANGE_DELAY, 32)
        .storeUint(unstakeDelay, 32)
        .storeUint(nonce, 64)
        .storeMaybeRef(initial)
        .endCell();
    return beginCell()
        .storeRef(config)
        .storeMaybeRef(initial) // the allowlist in effect
        .storeMaybeRef(null) // pending
        .storeDict(null) // hosts
        .endCell();
}

function hostInfo({ priceHash = 0x1111n, evidenceHash = 0x2222n, endpoint = beginCell().storeBuffer(Buffer.from('https://host.example:8443')).endCell() } = {}) {
    return beginCell().storeUint(priceHash, 256).storeUint(evidenceHash, 256).storeRef(endpoint).endCell();
}

function registerPayload(registry, wallet, keys, seqno, validUntil, info) {
    return beginCell()
        .storeUint(OP.register, 32)
        .storeAddress(registry)
        .storeAddress(wallet)
        .storeBuffer(keys.publicKey)
        .storeUint(seqno, 32)
        .storeUint(validUntil, 32)
        .storeRef(info)
        .endCell();
}

function deregisterPayload(registry, keys, seqno, validUntil) {
    return beginCell()
        .storeUint(OP.deregister, 32)
        .storeAddress(registry)
        .storeBuffer(keys.publicKey)
        .storeUint(seqno, 32)
        .storeUint(validUntil, 32)
        .endCell();
}

const recordValue = {
    serialize: () => { throw new Error('not needed'); },
    parse: (s) => {
        const r = {
            state: s.loadUint(8),
            wallet: s.loadAddress().toRawString(),
            stake: s.loadCoins(),
            seqno: s.loadUint(32),
            registeredAt: s.loadUint(32),
            leavingAt: s.loadUint(32),
        };
        const info = s.loadRef().beginParse();
        r.priceHash = info.loadUintBig(256);
        r.evidenceHash = info.loadUintBig(256);
        const endpoint = info.loadRef().beginParse();
        r.endpoint = endpoint.loadBuffer(endpoint.remainingBits / 8).toString();
        return r;
    },
};

function txTo(result, addr) {
    const tx = result.transactions.find((t) => t.inMessage?.info.type === 'internal' && t.inMessage.info.dest.equals(addr));
    assert.ok(tx, `no transaction on ${addr}`);
    return tx;
}

function exitCode(tx) {
    const cp = tx.description.computePhase;
    assert.equal(cp.type, 'vm', 'compute phase skipped');
    return cp.exitCode;
}

function storageFee(tx) {
    return tx.description.storagePhase?.storageFeesCollected ?? 0n;
}

/** A fresh chain with owner, host, stranger wallets and a deployed registry. */
async function setup({ unstakeDelay = UNSTAKE_DELAY } = {}) {
    const chain = await Blockchain.create();
    chain.now = START;
    const owner = await chain.treasury('owner');
    const host = await chain.treasury('host');
    const stranger = await chain.treasury('stranger');
    const init = { code, data: dataCell({ owner: owner.address, unstakeDelay }) };
    const registry = contractAddress(0, init);
    const deploy = await owner.send({ to: registry, value: toNano('1'), init, bounce: false,
        body: beginCell().storeUint(OP.topUp, 32).storeUint(0, 64).endCell() });
    assert.equal(exitCode(txTo(deploy, registry)), 0);

    const env = {
        chain, owner, host, stranger, registry,
        send: (from, value, body) => from.send({ to: registry, value, body, bounce: true }),
        /** A register message body; the signature is by keys over the fields given. */
        registerBody: ({ keys = hostKeys, signKeys = keys, seqno = 1, validUntil = chain.now + 600, info = hostInfo(), wallet = host.address, signedFor = registry, queryId = 1n } = {}) =>
            beginCell()
                .storeUint(OP.register, 32)
                .storeUint(queryId, 64)
                .storeBuffer(keys.publicKey)
                .storeUint(seqno, 32)
                .storeUint(validUntil, 32)
                .storeBuffer(sign(registerPayload(signedFor, wallet, keys, seqno, validUntil, info).hash(), signKeys.secretKey))
                .storeRef(info)
                .endCell(),
        register: (opts = {}, value = MIN_STAKE + FEE, from = host) => env.send(from, value, env.registerBody(opts)),
        deregisterBody: ({ keys = hostKeys, signKeys = keys, seqno = 2, validUntil = chain.now + 600, signedFor = registry } = {}) =>
            beginCell()
                .storeUint(OP.deregister, 32)
                .storeUint(2n, 64)
                .storeBuffer(keys.publicKey)
                .storeUint(seqno, 32)
                .storeUint(validUntil, 32)
                .storeBuffer(sign(deregisterPayload(signedFor, keys, seqno, validUntil).hash(), signKeys.secretKey))
                .endCell(),
        deregister: (opts = {}, from = stranger) => env.send(from, GAS, env.deregisterBody(opts)),
        withdraw: (keys = hostKeys, from = stranger, queryId = 3n) =>
            env.send(from, GAS, beginCell().storeUint(OP.withdraw, 32).storeUint(queryId, 64).storeBuffer(keys.publicKey).endCell()),
        propose: (list, from = owner) =>
            env.send(from, GAS, beginCell().storeUint(OP.propose, 32).storeUint(4n, 64).storeMaybeRef(list).endCell()),
        cancel: (from = owner) => env.send(from, GAS, beginCell().storeUint(OP.cancel, 32).storeUint(5n, 64).endCell()),
        apply: (from = stranger) => env.send(from, GAS, beginCell().storeUint(OP.apply, 32).storeUint(6n, 64).endCell()),
        hosts: async () => {
            const res = (await chain.runGetMethod(registry, 'get_hosts')).stackReader.readCellOpt();
            const d = Dictionary.loadDirect(Dictionary.Keys.BigUint(256), recordValue, res);
            return new Map(d.keys().map((k) => [k, d.get(k)]));
        },
        host1: async (keys = hostKeys) => (await env.hosts()).get(keyInt(keys)),
        nextSeqno: async (keys = hostKeys) =>
            (await chain.runGetMethod(registry, 'get_next_seqno', [{ type: 'int', value: keyInt(keys) }])).stackReader.readNumber(),
        allowlist: async () => (await chain.runGetMethod(registry, 'get_allowlist')).stackReader.readCellOpt(),
        pending: async () => {
            const r = (await chain.runGetMethod(registry, 'get_pending_allowlist')).stackReader;
            return { applyAt: r.readNumber(), allowlist: r.readCellOpt() };
        },
        data: async () => (await chain.getContract(registry)).accountState.state.data,
        balance: async () => (await chain.getContract(registry)).balance,
        /** Asserts that msg is rejected with code and leaves the registry as it was. */
        rejects: async (code, msg, from) => {
            const [before, balance, paid] = await Promise.all([env.data(), env.balance(), from.getBalance()]);
            const result = await msg();
            const tx = txTo(result, registry);
            assert.equal(exitCode(tx), code, 'exit code');
            assert.ok((await env.data()).equals(before), 'registry state changed');
            assert.equal(await env.balance(), balance - storageFee(tx), 'registry balance changed');
            const lost = paid - (await from.getBalance());
            assert.ok(lost > 0n && lost < FEE_BOUND, `sender lost ${lost}`);
        },
    };
    return env;
}

function ok(result, env) {
    const tx = txTo(result, env.registry);
    assert.equal(exitCode(tx), 0, 'exit code');
    assert.equal(tx.description.aborted, false);
    return tx;
}

const sameCell = (a, b) => assert.ok(a === b || (a && b && a.equals(b)), 'cells differ');

describe('deploy', () => {
    test('a top-up deploys the registry with its initial allowlist and no hosts', async () => {
        const env = await setup();
        const r = (await env.chain.runGetMethod(env.registry, 'get_registry_data')).stackReader;
        assert.equal(r.readAddress().toRawString(), env.owner.address.toRawString());
        assert.equal(r.readBigNumber(), MIN_STAKE);
        assert.equal(r.readNumber(), CHANGE_DELAY);
        assert.equal(r.readNumber(), UNSTAKE_DELAY);
        assert.equal(r.readBigNumber(), 0n);
        sameCell(r.readCellOpt(), ALLOW_A);
        sameCell(await env.allowlist(), ALLOW_A);
        assert.deepEqual(await env.pending(), { applyAt: 0, allowlist: null });
        assert.equal((await env.hosts()).size, 0);
        assert.equal(await env.nextSeqno(), 1);
    });

    test('anyone may top up', async () => {
        const env = await setup();
        const before = await env.balance();
        const tx = ok(await env.send(env.stranger, toNano('2'), beginCell().storeUint(OP.topUp, 32).storeUint(9n, 64).endCell()), env);
        assert.equal(await env.balance(), before + toNano('2') - tx.totalFees.coins);
    });

    test('rejects an unknown op and an empty body', async () => {
        const env = await setup();
        await env.rejects(ERR.unknownOp, () => env.send(env.stranger, GAS, beginCell().storeUint(0x12345678, 32).storeUint(0, 64).endCell()), env.stranger);
        await env.rejects(ERR.unknownOp, () => env.send(env.stranger, GAS, beginCell().endCell()), env.stranger);
    });
});

describe('register', () => {
    test('records the host under its settlement key, value minus the fee as stake', async () => {
        const env = await setup();
        const balance = await env.balance();
        const info = hostInfo({ priceHash: 0xabcn, evidenceHash: 0xdefn });
        const tx = ok(await env.register({ info }, MIN_STAKE + FEE + 5n), env);
        const rec = await env.host1();
        assert.deepEqual(rec, {
            state: STATE.active, wallet: env.host.address.toRawString(), stake: MIN_STAKE + 5n,
            seqno: 1, registeredAt: START, leavingAt: 0,
            priceHash: 0xabcn, evidenceHash: 0xdefn, endpoint: 'https://host.example:8443',
        });
        assert.equal(await env.nextSeqno(), 2);
        assert.equal(await env.balance(), balance + MIN_STAKE + FEE + 5n - tx.totalFees.coins);
        assert.ok(tx.totalFees.coins < FEE, `gas ${tx.totalFees.coins} is more than the fee`);
    });

    test('an update replaces the info and adds to the stake', async () => {
        const env = await setup();
        ok(await env.register(), env);
        env.chain.now = START + 100;
        ok(await env.register({ seqno: 2, info: hostInfo({ priceHash: 0x9999n }) }, FEE + toNano('1')), env);
        const rec = await env.host1();
        assert.equal(rec.priceHash, 0x9999n);
        assert.equal(rec.stake, MIN_STAKE + toNano('1'));
        assert.equal(rec.seqno, 2);
        assert.equal(rec.registeredAt, START, 'an update keeps the first registration time');
    });

    test('rejects a forged signature: another key, another registry, another wallet', async () => {
        const env = await setup();
        await env.rejects(ERR.badSignature, () => env.register({ signKeys: otherKeys }), env.host);
        const other = contractAddress(0, { code, data: dataCell({ owner: env.owner.address, nonce: 1n }) });
        await env.rejects(ERR.badSignature, () => env.register({ signedFor: other }), env.host);
        // A registration seen in flight, sent by someone else: the signed wallet is the
        // host's, so the stranger cannot make the stake (and the record) theirs.
        await env.rejects(ERR.badSignature, () => env.register({}, MIN_STAKE + FEE, env.stranger), env.stranger);
        // The endpoint is signed too: swapping it in transit breaks the signature.
        const body = env.registerBody();
        const s = body.beginParse();
        const forged = beginCell().storeBits(s.loadBits(32 + 64 + 256 + 32 + 32 + 512))
            .storeRef(hostInfo({ endpoint: beginCell().storeBuffer(Buffer.from('https://evil.example')).endCell() })).endCell();
        await env.rejects(ERR.badSignature, () => env.send(env.host, MIN_STAKE + FEE, forged), env.host);
    });

    test('rejects a replay, and an older seqno after a newer one', async () => {
        const env = await setup();
        const first = env.registerBody({ seqno: 1 });
        ok(await env.send(env.host, MIN_STAKE + FEE, first), env);
        await env.rejects(ERR.staleSeqno, () => env.send(env.host, MIN_STAKE + FEE, first), env.host);
        ok(await env.register({ seqno: 5 }, FEE), env);
        await env.rejects(ERR.staleSeqno, () => env.register({ seqno: 4 }, FEE), env.host);
        assert.equal(await env.nextSeqno(), 6);
    });

    test('rejects an expired registration and one valid for too long', async () => {
        const env = await setup();
        await env.rejects(ERR.expired, () => env.register({ validUntil: START }), env.host);
        await env.rejects(ERR.validityTooLong, () => env.register({ validUntil: START + MAX_VALIDITY + 1 }), env.host);
        ok(await env.register({ validUntil: START + MAX_VALIDITY }), env);
    });

    test('rejects too small a stake', async () => {
        const env = await setup();
        await env.rejects(ERR.stakeTooSmall, () => env.register({}, MIN_STAKE + FEE - 1n), env.host);
        await env.rejects(ERR.stakeTooSmall, () => env.register({}, FEE - 1n), env.host);
        ok(await env.register({}, MIN_STAKE + FEE), env);
        // An update with less than the fee is refused even though the stake is there.
        await env.rejects(ERR.stakeTooSmall, () => env.register({ seqno: 2 }, FEE - 1n), env.host);
    });

    test('rejects a bad endpoint', async () => {
        const env = await setup();
        const bad = [
            beginCell().endCell(),
            beginCell().storeBuffer(Buffer.alloc(127, 0x61)).storeUint(0, 7).endCell(),
            beginCell().storeBuffer(Buffer.from('https://a')).storeBit(1).endCell(),
            beginCell().storeBuffer(Buffer.from('https://a')).storeRef(beginCell().endCell()).endCell(),
        ];
        for (const endpoint of bad) {
            await env.rejects(ERR.badEndpoint, () => env.register({ info: hostInfo({ endpoint }) }), env.host);
        }
        ok(await env.register({ info: hostInfo({ endpoint: beginCell().storeBuffer(Buffer.alloc(127, 0x61)).endCell() }) }), env);
    });

    test('rejects a host info with anything after its fields', async () => {
        // Extra bits or references would be stored, and paid for by the registry, forever.
        const env = await setup();
        const endpoint = beginCell().storeBuffer(Buffer.from('https://a')).endCell();
        const base = () => beginCell().storeUint(1n, 256).storeUint(2n, 256).storeRef(endpoint);
        for (const info of [base().storeBit(1).endCell(), base().storeRef(beginCell().storeBuffer(Buffer.alloc(100)).endCell()).endCell()]) {
            const result = await env.register({ info });
            const code = exitCode(txTo(result, env.registry));
            assert.equal(code, 9, 'a padded host info: exit code');
            assert.equal((await env.hosts()).size, 0);
        }
    });
});

describe('deregister and withdraw the stake', () => {
    test('the stake comes back to the wallet only after the delay', async () => {
        const env = await setup();
        ok(await env.register({}, MIN_STAKE + FEE + 7n), env);
        env.chain.now = START + 50;
        ok(await env.deregister(), env);
        let rec = await env.host1();
        assert.equal(rec.state, STATE.leaving);
        assert.equal(rec.leavingAt, START + 50);
        assert.equal(rec.seqno, 2);

        env.chain.now = START + 50 + UNSTAKE_DELAY - 1;
        await env.rejects(ERR.tooEarly, () => env.withdraw(), env.stranger);

        env.chain.now = START + 50 + UNSTAKE_DELAY;
        const [hostBefore, balance] = [await env.host.getBalance(), await env.balance()];
        const result = await env.withdraw(hostKeys, env.stranger, 33n);
        const tx = ok(result, env);
        const [out, ...rest] = tx.outMessages.values();
        assert.equal(rest.length, 0);
        assert.ok(out.info.dest.equals(env.host.address), 'stake goes to the wallet that staked it');
        assert.equal(out.info.bounce, false);
        const body = out.body.beginParse();
        assert.equal(body.loadUint(32), OP.stakeReturned);
        assert.equal(body.loadUintBig(64), 33n);
        const got = (await env.host.getBalance()) - hostBefore;
        assert.ok(got >= MIN_STAKE + 7n && got < MIN_STAKE + 7n + GAS, `host got ${got}`);
        assert.equal(await env.balance(), balance - MIN_STAKE - 7n - storageFee(tx));
        rec = await env.host1();
        assert.equal(rec.state, STATE.withdrawn);
        assert.equal(rec.stake, 0n);
        await env.rejects(ERR.unknownHost, () => env.withdraw(), env.stranger);
    });

    test('rejects an early withdrawal while active', async () => {
        const env = await setup();
        ok(await env.register(), env);
        await env.rejects(ERR.notLeaving, () => env.withdraw(), env.stranger);
        await env.rejects(ERR.notLeaving, () => env.withdraw(hostKeys, env.host), env.host);
    });

    test('rejects a forged, replayed, repeated or unknown deregistration', async () => {
        const env = await setup();
        await env.rejects(ERR.unknownHost, () => env.deregister(), env.stranger);
        ok(await env.register(), env);
        await env.rejects(ERR.badSignature, () => env.deregister({ signKeys: otherKeys }), env.stranger);
        const other = contractAddress(0, { code, data: dataCell({ owner: env.owner.address, nonce: 1n }) });
        await env.rejects(ERR.badSignature, () => env.deregister({ signedFor: other }), env.stranger);
        await env.rejects(ERR.staleSeqno, () => env.deregister({ seqno: 1 }), env.stranger);
        await env.rejects(ERR.expired, () => env.deregister({ validUntil: START - 1 }), env.stranger);
        await env.rejects(ERR.validityTooLong, () => env.deregister({ validUntil: START + MAX_VALIDITY + 1 }), env.stranger);
        const body = env.deregisterBody();
        ok(await env.send(env.stranger, GAS, body), env);
        await env.rejects(ERR.staleSeqno, () => env.send(env.stranger, GAS, body), env.stranger);
        await env.rejects(ERR.alreadyLeaving, () => env.deregister({ seqno: 3 }), env.stranger);
    });

    test('re-registering while leaving stops the clock; after withdrawal old messages stay dead', async () => {
        // An unstake delay shorter than a signature's validity: the withdrawn record is
        // all that stops the first registration from being played again.
        const unstakeDelay = 600;
        const env = await setup({ unstakeDelay });
        const first = env.registerBody({ seqno: 1, validUntil: START + MAX_VALIDITY });
        ok(await env.send(env.host, MIN_STAKE + FEE, first), env);
        ok(await env.deregister({ seqno: 2 }), env);
        ok(await env.register({ seqno: 3 }, FEE), env);
        let rec = await env.host1();
        assert.equal(rec.state, STATE.active);
        assert.equal(rec.leavingAt, 0);
        assert.equal(rec.stake, MIN_STAKE);
        await env.rejects(ERR.notLeaving, () => env.withdraw(), env.stranger);

        ok(await env.deregister({ seqno: 4 }), env);
        env.chain.now = START + unstakeDelay;
        ok(await env.withdraw(), env);
        // The record's seqno outlives the stake: the first registration, still within
        // its validity, cannot be played again.
        await env.rejects(ERR.staleSeqno, () => env.send(env.host, MIN_STAKE + FEE, first), env.host);
        env.chain.now = START + unstakeDelay + 10;
        ok(await env.register({ seqno: 5 }), env);
        rec = await env.host1();
        assert.equal(rec.state, STATE.active);
        assert.equal(rec.stake, MIN_STAKE, 'a fresh stake after a withdrawal');
        assert.equal(rec.registeredAt, START + unstakeDelay + 10);
    });
});

describe('allowlist', () => {
    test('a proposal takes effect only after the delay', async () => {
        const env = await setup();
        ok(await env.propose(ALLOW_B), env);
        const pending = await env.pending();
        assert.equal(pending.applyAt, START + CHANGE_DELAY);
        sameCell(pending.allowlist, ALLOW_B);
        env.chain.now = START + CHANGE_DELAY - 1;
        sameCell(await env.allowlist(), ALLOW_A);
        await env.rejects(ERR.tooEarly, () => env.apply(), env.stranger);

        env.chain.now = START + CHANGE_DELAY;
        sameCell(await env.allowlist(), ALLOW_B);
        assert.deepEqual(await env.pending(), { applyAt: 0, allowlist: null });
        ok(await env.apply(), env);
        sameCell(await env.allowlist(), ALLOW_B);
        await env.rejects(ERR.nothingPending, () => env.apply(), env.stranger);
        // The initial allowlist stays in the config: the address still follows from it.
        const r = (await env.chain.runGetMethod(env.registry, 'get_registry_data')).stackReader;
        r.skip(5);
        sameCell(r.readCellOpt(), ALLOW_A);
    });

    test('a new proposal restarts the delay; a cancel drops it', async () => {
        const env = await setup();
        ok(await env.propose(ALLOW_B), env);
        env.chain.now = START + CHANGE_DELAY - 10;
        ok(await env.propose(ALLOW_C), env);
        assert.equal((await env.pending()).applyAt, START + 2 * CHANGE_DELAY - 10);
        env.chain.now = START + CHANGE_DELAY;
        sameCell(await env.allowlist(), ALLOW_A);
        ok(await env.cancel(), env);
        assert.deepEqual(await env.pending(), { applyAt: 0, allowlist: null });
        env.chain.now = START + 3 * CHANGE_DELAY;
        sameCell(await env.allowlist(), ALLOW_A);
        await env.rejects(ERR.nothingPending, () => env.cancel(), env.owner);
    });

    test('a due change can no longer be cancelled or replaced', async () => {
        const env = await setup();
        ok(await env.propose(ALLOW_B), env);
        env.chain.now = START + CHANGE_DELAY;
        // The cancel applies the due change first, then finds nothing pending.
        const result = await env.cancel();
        assert.equal(exitCode(txTo(result, env.registry)), ERR.nothingPending);
        sameCell(await env.allowlist(), ALLOW_B);
        ok(await env.propose(ALLOW_C), env);
        sameCell(await env.allowlist(), ALLOW_B, 'the new proposal waits; the due one stays in effect');
        assert.equal((await env.pending()).applyAt, START + 2 * CHANGE_DELAY);
    });

    test('an empty allowlist can be proposed', async () => {
        const env = await setup();
        ok(await env.propose(null), env);
        env.chain.now = START + CHANGE_DELAY;
        assert.equal(await env.allowlist(), null);
    });

    test('rejects owner operations from anyone else', async () => {
        const env = await setup();
        await env.rejects(ERR.wrongSender, () => env.propose(ALLOW_B, env.stranger), env.stranger);
        await env.rejects(ERR.wrongSender, () => env.propose(ALLOW_B, env.host), env.host);
        ok(await env.propose(ALLOW_B), env);
        await env.rejects(ERR.wrongSender, () => env.cancel(env.stranger), env.stranger);
    });
});
