// A chat client built on the official OpenAI SDK, for web/openai_sdk_test.go: it calls a
// Cocoon pipeline exactly as a Mini App's backend would, and prints what the SDK made of
// the answer, one JSON line per mode:
//
//	OPENAI_API_KEY=KEY node client.mjs --base-url http://127.0.0.1:PORT/p/ID/v1 \
//	    --model stories260K --prompt "Once upon a time" --max-tokens 40 create stream
//
// create: {"mode":"create","text":...,"finish_reason":...,"usage":{...},"chunks":1}
// stream: the same, from a stream with stream_options.include_usage; chunks counts the
//         chunks that carried text.
//
// A failure prints {"mode":...,"error":{"name","status","message","type","code"}} and
// exits 1: status and type are the APIError's (null for a connection failure), message
// is the SDK's. The key comes from OPENAI_API_KEY so that it stays off the command line.
import { parseArgs } from 'node:util';
import OpenAI from 'openai';

const { values: opts, positionals: modes } = parseArgs({
  allowPositionals: true,
  options: {
    'base-url': { type: 'string' },
    model: { type: 'string', default: 'stories260K' },
    prompt: { type: 'string', default: '' },
    'max-tokens': { type: 'string', default: '40' },
  },
});
if (!opts['base-url'] || modes.length === 0 || modes.some((m) => m !== 'create' && m !== 'stream')) {
  console.error('usage: node client.mjs --base-url URL [--model M] [--prompt P] [--max-tokens N] create|stream...');
  process.exit(2);
}

// No retries: the test wants the server's first answer, and a retried 429 or 5xx would
// hide it.
const client = new OpenAI({ baseURL: opts['base-url'], maxRetries: 0, timeout: 60_000 });
const request = {
  model: opts.model,
  messages: [{ role: 'user', content: opts.prompt }],
  max_completion_tokens: Number(opts['max-tokens']),
  temperature: 0,
};

async function create() {
  const c = await client.chat.completions.create(request);
  const choice = c.choices[0];
  return { text: choice.message.content, finish_reason: choice.finish_reason, usage: c.usage, chunks: 1 };
}

async function stream() {
  const s = await client.chat.completions.create({ ...request, stream: true, stream_options: { include_usage: true } });
  let text = '';
  let finishReason = null;
  let usage = null;
  let chunks = 0;
  for await (const chunk of s) {
    for (const choice of chunk.choices) {
      if (choice.delta.content) {
        text += choice.delta.content;
        chunks++;
      }
      if (choice.finish_reason) finishReason = choice.finish_reason;
    }
    if (chunk.usage) usage = chunk.usage;
  }
  return { text, finish_reason: finishReason, usage, chunks };
}

for (const mode of modes) {
  try {
    const result = mode === 'create' ? await create() : await stream();
    console.log(JSON.stringify({ mode, ...result }));
  } catch (err) {
    const error = { name: err.constructor.name, status: null, message: String(err.message), type: null, code: null };
    if (err instanceof OpenAI.APIError) {
      Object.assign(error, { status: err.status ?? null, type: err.type ?? null, code: err.code ?? null });
    }
    console.log(JSON.stringify({ mode, error }));
    process.exit(1);
  }
}
