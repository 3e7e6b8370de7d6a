// Tests of the escrow contract (build/escrow.boc, the bytes Go embeds) on @ton/sandbox,
// against settle/ESCROW.md: every operation's effect on state and balances, and every
// rejection with its exit code.
import { describe, test } from 'node:test';
import assert from 'node:assert/strict';
import { readFileSync } from 'node:fs';
import { Blockchain } from '@ton/sandbox';
import { Address, beginCell, Cell, contractAddress, toNano } from '@ton/core';
import { keyPairFromSeed, sign } from '@ton/crypto';

const code = Cell.fromBoc(readFileSync(new URL('../build/escrow.boc', import.meta.url)))[0];

const OP = {
    deposit: 0x434f4401,
    charge: 0x434f4402,
    request: 0x434f4403,
    withdraw: 0x434f4404,
    close: 0x434f4405,
    payout: 0x434f4410,
    refund: 0x434f4411,
};

const ERR = {
    wrongSender: 101,
    badSignature: 102,
    notIncreasing: 103,
    overDeposit: 104,
    tooEarly: 105,
    closing: 106,
    alreadyRequested: 107,
    notRequested: 108,
    depositTooSmall: 109,
    unknownOp: 65535,
};

const RESERVE = toNano('0.01');
const GAS = toNano('0.05'); // attached to non-deposit operations to pay for gas
const FEE_BOUND = toNano('0.02'); // generous bound on what one round trip costs a wallet
const START = 1_800_000_000;
const TIMEOUT = 3600;

const clientKeys = keyPairFromSeed(Buffer.alloc(32, 0xc1));
const hostKeys = keyPairFromSeed(Buffer.alloc(32, 0x40));
const otherKeys = keyPairFromSeed(Buffer.alloc(32, 0x99));

/** The data cell, laid out as in ESCROW.md "Storage"; the initial one by default. */
function dataCell({ channelId, timeout, client, host, closeRequestedAt = 0, deposited = 0n, charged = 0n }) {
    return beginCell()
        .storeUint(channelId, 64)
        .storeUint(timeout, 32)
        .storeUint(closeRequestedAt, 32)
        .storeCoins(deposited)
        .storeCoins(charged)
        .storeBuffer(clientKeys.publicKey)
        .storeBuffer(hostKeys.publicKey)
        .storeRef(beginCell().storeAddress(client).storeAddress(host))
        .endCell();
}

/** ed25519 signature of hash([op:uint32 escrow:MsgAddressInt cumulative:Coins]). */
function signPayload(op, escrow, cumulative, secretKey) {
    const payload = beginCell().storeUint(op, 32).storeAddress(escrow).storeCoins(cumulative).endCell();
    return sign(payload.hash(), secretKey);
}

const body = {
    simple: (op, queryId = 0n) => beginCell().storeUint(op, 32).storeUint(queryId, 64).endCell(),
    charge: (queryId, cumulative, sig) =>
        beginCell().storeUint(OP.charge, 32).storeUint(queryId, 64).storeCoins(cumulative).storeBuffer(sig).endCell(),
    close: (queryId, cumulative, clientSig, hostSig) =>
        beginCell()
            .storeUint(OP.close, 32)
            .storeUint(queryId, 64)
            .storeCoins(cumulative)
            .storeRef(beginCell().storeBuffer(clientSig))
            .storeRef(beginCell().storeBuffer(hostSig))
            .endCell(),
};

/** The transaction that processed a message to addr, and its compute phase exit code. */
function txTo(result, addr) {
    const tx = result.transactions.find((t) => t.inMessage?.info.type === 'internal' && t.inMessage.info.dest.equals(addr));
    assert.ok(tx, `no transaction on ${addr}`);
    assert.equal(tx.description.type, 'generic');
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

/** The internal messages a transaction sent, as {dest, value, bounce, op, queryId}. */
function sent(tx) {
    return tx.outMessages.values().map((m) => {
        const s = m.body.beginParse();
        return {
            dest: m.info.dest,
            value: m.info.value.coins,
            bounce: m.info.bounce,
            op: s.loadUint(32),
            queryId: s.loadUintBig(64),
        };
    });
}

/**
 * A fresh chain with client, host and stranger wallets and an escrow not yet deployed.
 * The returned object has helpers bound to that escrow.
 */
async function setup({ channelId = 7n, timeout = TIMEOUT } = {}) {
    const chain = await Blockchain.create();
    chain.now = START;
    const client = await chain.treasury('client');
    const host = await chain.treasury('host');
    const stranger = await chain.treasury('stranger');
    const layout = { channelId, timeout, client: client.address, host: host.address };
    const init = { code, data: dataCell(layout) };
    const escrow = contractAddress(0, init);

    const env = {
        chain, client, host, stranger, init, escrow, channelId, timeout,
        send: (from, value, msgBody, withInit = false) =>
            from.send({ to: escrow, value, body: msgBody, init: withInit ? init : undefined, bounce: true }),
        deposit: (value, from = client, queryId = 1n) => env.send(from, value, body.simple(OP.deposit, queryId), true),
        charge: (cumulative, { from = host, keys = hostKeys, signedFor = escrow, queryId = 2n } = {}) =>
            env.send(from, GAS, body.charge(queryId, cumulative, signPayload(OP.charge, signedFor, cumulative, keys.secretKey))),
        request: (from = client) => env.send(from, GAS, body.simple(OP.request, 3n)),
        withdraw: (from = client, queryId = 4n) => env.send(from, GAS, body.simple(OP.withdraw, queryId)),
        close: (cumulative, { from = stranger, clientKey = clientKeys, hostKey = hostKeys, queryId = 5n } = {}) =>
            env.send(from, GAS, body.close(queryId, cumulative,
                signPayload(OP.close, escrow, cumulative, clientKey.secretKey),
                signPayload(OP.close, escrow, cumulative, hostKey.secretKey))),
        data: async () => {
            const r = (await chain.runGetMethod(escrow, 'get_escrow_data')).stackReader;
            return {
                channelId: r.readBigNumber(),
                timeout: r.readNumber(),
                closeRequestedAt: r.readNumber(),
                deposited: r.readBigNumber(),
                charged: r.readBigNumber(),
                clientKey: r.readBigNumber(),
                hostKey: r.readBigNumber(),
                clientAddr: r.readAddress().toRawString(),
                hostAddr: r.readAddress().toRawString(),
            };
        },
        unspent: async () => (await chain.runGetMethod(escrow, 'get_unspent')).stackReader.readBigNumber(),
        balance: async () => (await chain.getContract(escrow)).balance,
        state: async () => (await chain.getContract(escrow)).accountState?.type,
        /** Asserts the stored data is, bit for bit, the ESCROW.md layout with these fields. */
        stores: async (fields) => {
            const state = (await chain.getContract(escrow)).accountState;
            assert.equal(state?.type, 'active');
            assert.equal(state.state.data.toBoc().toString('hex'), dataCell({ ...layout, ...fields }).toBoc().toString('hex'));
        },
        destroyed: async () => (await chain.getContract(escrow)).account.account === undefined,
        /** Asserts that msg is rejected with code and leaves the escrow as it was. */
        rejects: async (code, msg, from) => {
            const [before, balance, paid] = await Promise.all([env.data(), env.balance(), from.getBalance()]);
            const result = await msg();
            const tx = txTo(result, escrow);
            assert.equal(exitCode(tx), code, 'exit code');
            assert.deepEqual(await env.data(), before, 'escrow state changed');
            assert.equal(await env.balance(), balance - storageFee(tx), 'escrow balance changed');
            // The message bounced: its sender lost only fees, not the value it attached.
            const lost = paid - (await from.getBalance());
            assert.ok(lost > 0n && lost < FEE_BOUND, `sender lost ${lost}`);
        },
    };
    return env;
}

/** setup() plus a first deposit of amount, asserted to succeed. */
async function deployed(amount = toNano('10'), opts) {
    const env = await setup(opts);
    const result = await env.deposit(amount);
    assert.equal(exitCode(txTo(result, env.escrow)), 0);
    return env;
}

function ok(result, env) {
    const tx = txTo(result, env.escrow);
    assert.equal(exitCode(tx), 0, 'exit code');
    assert.equal(tx.description.aborted, false);
    assert.equal(tx.description.actionPhase?.success ?? true, true, 'action phase');
    return tx;
}

const addrEq = (a, b) => assert.ok(a.equals(b), `${a} != ${b}`);

describe('deposit', () => {
    test('deploys the escrow with its state init and credits value - reserve', async () => {
        const env = await setup();
        assert.equal(await env.state(), 'uninit');
        const tx = ok(await env.deposit(toNano('10'), env.client, 77n), env);
        assert.equal(await env.state(), 'active');
        const d = await env.data();
        assert.deepEqual(d, {
                channelId: 7n, timeout: TIMEOUT, closeRequestedAt: 0,
                deposited: toNano('10') - RESERVE, charged: 0n,
                clientKey: BigInt('0x' + clientKeys.publicKey.toString('hex')),
                hostKey: BigInt('0x' + hostKeys.publicKey.toString('hex')),
                clientAddr: env.client.address.toRawString(),
                hostAddr: env.host.address.toRawString(),
            });
        assert.equal(await env.unspent(), toNano('10') - RESERVE);
        await env.stores({ deposited: toNano('10') - RESERVE });
        // The escrow keeps the whole value minus this transaction's fees: the unspent
        // amount is backed, and the reserve covered the gas.
        const balance = await env.balance();
        assert.equal(balance, toNano('10') - tx.totalFees.coins);
        assert.ok(balance > toNano('10') - RESERVE && balance < toNano('10'));
        assert.equal(tx.outMessagesCount, 0);
    });

    test('a second deposit adds to the first', async () => {
        const env = await deployed(toNano('10'));
        const balance = await env.balance();
        const tx = ok(await env.deposit(toNano('2.5')), env);
        assert.equal((await env.data()).deposited, toNano('12.5') - 2n * RESERVE);
        assert.equal(await env.unspent(), toNano('12.5') - 2n * RESERVE);
        assert.equal(await env.balance(), balance + toNano('2.5') - tx.totalFees.coins);
    });

    test('rejects a deposit not from the client', async () => {
        const env = await deployed();
        await env.rejects(ERR.wrongSender, () => env.deposit(toNano('1'), env.stranger), env.stranger);
        await env.rejects(ERR.wrongSender, () => env.deposit(toNano('1'), env.host), env.host);
    });

    test('rejects a deposit of 0.01 TON or less', async () => {
        const env = await deployed();
        await env.rejects(ERR.depositTooSmall, () => env.deposit(RESERVE), env.client);
        // Just above the reserve is accepted and credits 1 nanoTON.
        ok(await env.deposit(RESERVE + 1n), env);
        assert.equal((await env.data()).deposited, toNano('10') - RESERVE + 1n);
    });

    test('rejects a deposit after a withdrawal request', async () => {
        const env = await deployed();
        ok(await env.request(), env);
        await env.rejects(ERR.closing, () => env.deposit(toNano('1')), env.client);
    });
});

describe('charge', () => {
    test('pays the difference to the host, twice', async () => {
        const env = await deployed(toNano('10'));
        let charged = 0n;
        for (const [cumulative, queryId] of [[toNano('1.5'), 11n], [toNano('4'), 12n]]) {
            const [balance, hostBefore] = [await env.balance(), await env.host.getBalance()];
            const result = await env.charge(cumulative, { queryId });
            const tx = ok(result, env);
            const delta = cumulative - charged;
            // Mode 64: the payout is the difference plus what is left of the host's own
            // attached value, so the escrow balance drops by exactly the difference.
            assert.equal(await env.balance(), balance - delta - storageFee(tx));
            const [payout, ...rest] = sent(tx);
            assert.equal(rest.length, 0);
            addrEq(payout.dest, env.host.address);
            assert.equal(payout.op, OP.payout);
            assert.equal(payout.queryId, queryId);
            assert.equal(payout.bounce, false);
            assert.ok(payout.value > delta && payout.value < delta + GAS, `payout ${payout.value}`);
            const got = (await env.host.getBalance()) - hostBefore;
            assert.ok(got <= delta && got > delta - FEE_BOUND, `host got ${got} for ${delta}`);
            const d = await env.data();
            assert.equal(d.charged, cumulative);
            assert.equal(d.deposited, toNano('10') - RESERVE);
            assert.equal(await env.unspent(), toNano('10') - RESERVE - cumulative);
            await env.stores({ deposited: toNano('10') - RESERVE, charged: cumulative });
            charged = cumulative;
        }
    });

    test('can charge the whole deposit', async () => {
        const env = await deployed(toNano('3'));
        ok(await env.charge(toNano('3') - RESERVE), env);
        assert.equal(await env.unspent(), 0n);
        assert.ok((await env.balance()) > 0n, 'the reserve stays');
    });

    test('is allowed while a withdrawal is pending', async () => {
        const env = await deployed();
        ok(await env.request(), env);
        env.chain.now = START + TIMEOUT - 1;
        ok(await env.charge(toNano('1')), env);
        assert.equal((await env.data()).charged, toNano('1'));
    });

    test('rejects a charge not from the host', async () => {
        const env = await deployed();
        await env.rejects(ERR.wrongSender, () => env.charge(toNano('1'), { from: env.client }), env.client);
        await env.rejects(ERR.wrongSender, () => env.charge(toNano('1'), { from: env.stranger }), env.stranger);
    });

    test('rejects a signature by another key', async () => {
        const env = await deployed();
        await env.rejects(ERR.badSignature, () => env.charge(toNano('1'), { keys: otherKeys }), env.host);
        await env.rejects(ERR.badSignature, () => env.charge(toNano('1'), { keys: clientKeys }), env.host);
    });

    test('rejects a signature made for another escrow', async () => {
        const env = await deployed();
        // Same parties and keys, another channel: a different address.
        const other = await setup({ channelId: 8n });
        assert.ok(!other.escrow.equals(env.escrow));
        await env.rejects(ERR.badSignature, () => env.charge(toNano('1'), { signedFor: other.escrow }), env.host);
    });

    test('rejects a signature over another amount', async () => {
        const env = await deployed();
        const sig = signPayload(OP.charge, env.escrow, toNano('1'), hostKeys.secretKey);
        await env.rejects(ERR.badSignature, () => env.send(env.host, GAS, body.charge(0n, toNano('2'), sig)), env.host);
    });

    test('rejects a cumulative amount that does not increase', async () => {
        const env = await deployed();
        ok(await env.charge(toNano('2')), env);
        await env.rejects(ERR.notIncreasing, () => env.charge(toNano('2')), env.host);
        await env.rejects(ERR.notIncreasing, () => env.charge(toNano('1')), env.host);
        await env.rejects(ERR.notIncreasing, () => env.charge(0n), env.host);
    });

    test('rejects a cumulative amount over the deposit', async () => {
        const env = await deployed(toNano('5'));
        await env.rejects(ERR.overDeposit, () => env.charge(toNano('5') - RESERVE + 1n), env.host);
        ok(await env.charge(toNano('3')), env);
        await env.rejects(ERR.overDeposit, () => env.charge(toNano('6')), env.host);
    });
});

describe('withdrawal', () => {
    test('request then withdraw after the timeout refunds everything and destroys', async () => {
        const env = await deployed(toNano('10'));
        ok(await env.charge(toNano('3')), env);
        ok(await env.request(), env);
        assert.equal((await env.data()).closeRequestedAt, START);
        await env.stores({ deposited: toNano('10') - RESERVE, charged: toNano('3'), closeRequestedAt: START });

        env.chain.now = START + TIMEOUT;
        const [balance, clientBefore] = [await env.balance(), await env.client.getBalance()];
        const tx = ok(await env.withdraw(env.client, 44n), env);
        const [refund, ...rest] = sent(tx);
        assert.equal(rest.length, 0);
        addrEq(refund.dest, env.client.address);
        assert.equal(refund.op, OP.refund);
        assert.equal(refund.queryId, 44n);
        assert.equal(refund.bounce, false);
        // Mode 128: the whole balance, including the withdraw message's own value.
        assert.ok(refund.value > balance && refund.value < balance + GAS, `refund ${refund.value} of ${balance}`);
        assert.ok(refund.value >= toNano('7') - RESERVE, 'refund covers the unspent deposit');
        const got = (await env.client.getBalance()) - clientBefore;
        assert.ok(got > balance - FEE_BOUND && got <= balance, `client got ${got} of ${balance}`);
        // Mode 32: destroyed.
        assert.equal(await env.balance(), 0n);
        assert.ok(await env.destroyed(), 'account still exists');
    });

    test('rejects a request, or a withdrawal, not from the client', async () => {
        const env = await deployed();
        await env.rejects(ERR.wrongSender, () => env.request(env.host), env.host);
        await env.rejects(ERR.wrongSender, () => env.request(env.stranger), env.stranger);
        ok(await env.request(), env);
        env.chain.now = START + TIMEOUT;
        await env.rejects(ERR.wrongSender, () => env.withdraw(env.host), env.host);
        await env.rejects(ERR.wrongSender, () => env.withdraw(env.stranger), env.stranger);
    });

    test('rejects a withdrawal before the timeout', async () => {
        const env = await deployed();
        ok(await env.request(), env);
        await env.rejects(ERR.tooEarly, () => env.withdraw(), env.client);
        env.chain.now = START + TIMEOUT - 1;
        await env.rejects(ERR.tooEarly, () => env.withdraw(), env.client);
    });

    test('rejects a withdrawal without a request', async () => {
        const env = await deployed();
        env.chain.now = START + 10 * TIMEOUT;
        await env.rejects(ERR.notRequested, () => env.withdraw(), env.client);
    });

    test('rejects a second request, which would move the deadline', async () => {
        const env = await deployed();
        ok(await env.request(), env);
        env.chain.now = START + 100;
        await env.rejects(ERR.alreadyRequested, () => env.request(), env.client);
        assert.equal((await env.data()).closeRequestedAt, START);
    });
});

describe('cooperative close', () => {
    test('pays the host the signed difference and the client the rest, and destroys', async () => {
        const env = await deployed(toNano('10'));
        ok(await env.charge(toNano('2')), env);
        const balance = await env.balance();
        const [hostBefore, clientBefore] = [await env.host.getBalance(), await env.client.getBalance()];
        const tx = ok(await env.close(toNano('5'), { queryId: 55n }), env);
        const [payout, refund, ...rest] = sent(tx);
        assert.equal(rest.length, 0);
        addrEq(payout.dest, env.host.address);
        assert.deepEqual([payout.op, payout.queryId, payout.value, payout.bounce], [OP.payout, 55n, toNano('3'), false]);
        addrEq(refund.dest, env.client.address);
        assert.deepEqual([refund.op, refund.queryId, refund.bounce], [OP.refund, 55n, false]);
        // The client gets the rest: balance - 3 TON, less this transaction's fees, plus
        // the closing message's value; which is at least the unspent 5 TON - reserve.
        assert.ok(refund.value < balance - toNano('3') + GAS && refund.value > toNano('5') - RESERVE, `refund ${refund.value}`);
        const hostGot = (await env.host.getBalance()) - hostBefore;
        assert.ok(hostGot <= toNano('3') && hostGot > toNano('3') - FEE_BOUND, `host got ${hostGot}`);
        const clientGot = (await env.client.getBalance()) - clientBefore;
        assert.ok(clientGot <= refund.value && clientGot > refund.value - FEE_BOUND, `client got ${clientGot}`);
        assert.equal(await env.balance(), 0n);
        assert.ok(await env.destroyed(), 'account still exists');
    });

    test('at the charged amount pays the host nothing', async () => {
        const env = await deployed(toNano('10'));
        ok(await env.charge(toNano('2')), env);
        const tx = ok(await env.close(toNano('2')), env);
        const msgs = sent(tx);
        assert.equal(msgs.length, 1);
        addrEq(msgs[0].dest, env.client.address);
        assert.ok(msgs[0].value > toNano('8') - RESERVE);
        assert.ok(await env.destroyed(), 'account still exists');
    });

    test('works while a withdrawal is pending', async () => {
        const env = await deployed();
        ok(await env.request(), env);
        ok(await env.close(toNano('1')), env);
        assert.ok(await env.destroyed(), 'account still exists');
    });

    test('rejects one bad signature', async () => {
        const env = await deployed();
        await env.rejects(ERR.badSignature, () => env.close(toNano('1'), { clientKey: otherKeys }), env.stranger);
        await env.rejects(ERR.badSignature, () => env.close(toNano('1'), { hostKey: otherKeys }), env.stranger);
        // Both signatures by the host: the client's is missing.
        await env.rejects(ERR.badSignature, () => env.close(toNano('1'), { clientKey: hostKeys }), env.stranger);
    });

    test('rejects a charge signature used as a close signature', async () => {
        const env = await deployed();
        const amount = toNano('1');
        const msg = body.close(0n, amount,
            signPayload(OP.charge, env.escrow, amount, clientKeys.secretKey),
            signPayload(OP.charge, env.escrow, amount, hostKeys.secretKey));
        await env.rejects(ERR.badSignature, () => env.send(env.stranger, GAS, msg), env.stranger);
    });

    test('rejects an amount below the charged one, or over the deposit', async () => {
        const env = await deployed(toNano('5'));
        ok(await env.charge(toNano('2')), env);
        await env.rejects(ERR.notIncreasing, () => env.close(toNano('2') - 1n), env.stranger);
        await env.rejects(ERR.overDeposit, () => env.close(toNano('5') - RESERVE + 1n), env.stranger);
    });
});

describe('other messages', () => {
    test('rejects an unknown op and an empty body with 65535', async () => {
        const env = await deployed();
        await env.rejects(ERR.unknownOp, () => env.send(env.client, GAS, body.simple(0x434f4406)), env.client);
        await env.rejects(ERR.unknownOp, () => env.send(env.client, GAS, body.simple(OP.payout)), env.client);
        await env.rejects(ERR.unknownOp, () => env.send(env.client, GAS, undefined), env.client);
        await env.rejects(ERR.unknownOp, () => env.send(env.stranger, GAS, beginCell().storeUint(1, 8).endCell()), env.stranger);
    });

    test('ignores a bounced message', async () => {
        const env = await deployed();
        const [before, balance] = [await env.data(), await env.balance()];
        // A bounce of a deposit from the client: were it not filtered out, 0xFFFFFFFF
        // would be an unknown op (65535).
        const result = await env.chain.sendMessage({
            info: {
                type: 'internal', ihrDisabled: true, bounce: false, bounced: true,
                src: env.client.address, dest: env.escrow, value: { coins: toNano('1') },
                ihrFee: 0n, forwardFee: 0n, createdLt: 0n, createdAt: 0,
            },
            body: beginCell().storeUint(0xffffffff, 32).storeUint(OP.deposit, 32).storeUint(0n, 64).endCell(),
        });
        const tx = ok(result, env);
        assert.equal(tx.outMessagesCount, 0);
        assert.deepEqual(await env.data(), before);
        assert.equal(await env.balance(), balance + toNano('1') - tx.totalFees.coins);
    });
});
