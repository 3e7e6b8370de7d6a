// The chat types: an OpenAI chat completion request (the input and output of a pre
// hook) and response (of a post hook), with the same rules as the Go SDK's
// (abi/guest/object.go), so that a module gives the same JSON in either language:
//
//   - Members without a field are kept verbatim in the object's `extra` map.
//   - A known member whose value is null is kept in `extra` too; setting the field to
//     a non-empty value replaces it.
//   - A known member that was present is written back even when empty ("index":0,
//     "content":""); one that was absent is written only when set.
//   - Known members are written first, in declaration order, then `extra` sorted by
//     name: the output equals the input as a JSON value, not byte for byte.
//
// decode functions return null on malformed input, with the reason in the Reader.

import { Kind, RawJSON, Reader, Writer } from "./json";

// The extra members of an object, by name.
export type Extra = Map<string, RawJSON>;

function writeExtra(w: Writer, extra: Extra, written: string[], first: bool): void {
  const names = extra.keys().sort();
  for (let i = 0; i < names.length; i++) {
    const name = names[i];
    if (written.includes(name)) continue;
    w.member(name, first);
    first = false;
    w.raw(extra.get(name));
  }
}

// ChatRequest is a chat completion request (POST /v1/chat/completions). Only model and
// messages have fields; everything else (stream, max_tokens, temperature, tools,
// vendor extensions…) is in extra and passed on unchanged.
export class ChatRequest {
  model: string = "";
  messages: Message[] = [];
  extra: Extra = new Map<string, RawJSON>();
  hasModel: bool = false;
  hasMessages: bool = false;

  static decode(r: Reader): ChatRequest | null {
    const req = new ChatRequest();
    if (r.readNull()) return req;
    if (!r.beginObject("request")) return null;
    while (true) {
      const name = r.nextMember();
      if (name == null) break;
      if (r.kind() == Kind.Null) {
        req.extra.set(name, r.readRaw());
      } else if (name == "model") {
        req.model = r.readString("model");
        req.hasModel = true;
      } else if (name == "messages") {
        const messages = decodeArray<Message>(r, "messages", Message.decode);
        if (messages == null) return null;
        req.messages = messages;
        req.hasMessages = true;
      } else {
        req.extra.set(name, r.readRaw());
      }
    }
    return r.error == null ? req : null;
  }

  encode(w: Writer): void {
    w.byte(0x7b);
    const written = new Array<string>();
    if (this.hasModel || this.model.length > 0) {
      w.member("model", written.length == 0);
      w.string(this.model);
      written.push("model");
    }
    if (this.hasMessages || this.messages.length > 0) {
      w.member("messages", written.length == 0);
      encodeArray<Message>(w, this.messages);
      written.push("messages");
    }
    writeExtra(w, this.extra, written, written.length == 0);
    w.byte(0x7d);
  }
}

// Message is one message of a chat. Other members (tool_calls, tool_call_id…) are in
// extra; so is a null content, as in an assistant message that only calls tools.
export class Message {
  role: string = "";
  content: Content = new Content();
  name: string = "";
  extra: Extra = new Map<string, RawJSON>();
  hasRole: bool = false;
  hasName: bool = false;

  constructor(role: string = "", content: Content = new Content()) {
    this.role = role;
    this.content = content;
  }

  // isEmpty reports whether the message has nothing to write.
  isEmpty(): bool {
    return !this.hasRole && !this.hasName && this.role.length == 0 && this.content.kind == ContentKind.None &&
      this.name.length == 0 && this.extra.size == 0;
  }

  static decode(r: Reader): Message | null {
    const m = new Message();
    if (r.readNull()) return m;
    if (!r.beginObject("message")) return null;
    while (true) {
      const name = r.nextMember();
      if (name == null) break;
      if (r.kind() == Kind.Null) {
        m.extra.set(name, r.readRaw());
      } else if (name == "role") {
        m.role = r.readString("role");
        m.hasRole = true;
      } else if (name == "content") {
        const c = Content.decode(r);
        if (c == null) return null;
        m.content = c;
      } else if (name == "name") {
        m.name = r.readString("name");
        m.hasName = true;
      } else {
        m.extra.set(name, r.readRaw());
      }
    }
    return r.error == null ? m : null;
  }

  encode(w: Writer): void {
    w.byte(0x7b);
    const written = new Array<string>();
    if (this.hasRole || this.role.length > 0) {
      w.member("role", true);
      w.string(this.role);
      written.push("role");
    }
    if (this.content.kind != ContentKind.None) {
      w.member("content", written.length == 0);
      this.content.encode(w);
      written.push("content");
    }
    if (this.hasName || this.name.length > 0) {
      w.member("name", written.length == 0);
      w.string(this.name);
      written.push("name");
    }
    writeExtra(w, this.extra, written, written.length == 0);
    w.byte(0x7d);
  }
}

export const enum ContentKind {
  None = 0, // no content: the member is left out
  Text,
  Parts,
}

// Content is a message's content: a string or an array of parts.
export class Content {
  kind: ContentKind = ContentKind.None;
  // text is the string of Text content.
  text: string = "";
  // parts are the parts of Parts content.
  parts: ContentPart[] = [];

  static fromText(s: string): Content {
    const c = new Content();
    c.kind = ContentKind.Text;
    c.text = s;
    return c;
  }

  static fromParts(parts: ContentPart[]): Content {
    const c = new Content();
    c.kind = ContentKind.Parts;
    c.parts = parts;
    return c;
  }

  isParts(): bool {
    return this.kind == ContentKind.Parts;
  }

  // allText returns the string, or the text of every part of type "text" joined with
  // "\n" (as OpenAI-compatible servers join them for the model).
  allText(): string {
    if (this.kind != ContentKind.Parts) return this.text;
    const texts = new Array<string>();
    for (let i = 0; i < this.parts.length; i++) {
      if (this.parts[i].type == "text") texts.push(this.parts[i].text);
    }
    return texts.join("\n");
  }

  // mapText replaces every text with f of it: the string, or the text of every part of
  // type "text". Other parts and absent content are left alone. f cannot capture local
  // variables (AssemblyScript has no closures); it may read module-level ones.
  mapText(f: (s: string) => string): void {
    if (this.kind == ContentKind.Text) {
      this.text = f(this.text);
    } else if (this.kind == ContentKind.Parts) {
      for (let i = 0; i < this.parts.length; i++) {
        if (this.parts[i].type == "text") this.parts[i].text = f(this.parts[i].text);
      }
    }
  }

  static decode(r: Reader): Content | null {
    const k = r.kind();
    if (k == Kind.String) return Content.fromText(r.readString("content"));
    if (k == Kind.Array) {
      const parts = decodeArray<ContentPart>(r, "content", ContentPart.decode);
      return parts == null ? null : Content.fromParts(parts);
    }
    r.fail("content: want a string or an array of parts");
    return null;
  }

  encode(w: Writer): void {
    if (this.kind == ContentKind.Text) w.string(this.text);
    else if (this.kind == ContentKind.Parts) encodeArray<ContentPart>(w, this.parts);
    else w.ascii("null");
  }
}

// ContentPart is one part of array content, such as {"type":"text","text":"…"}.
// Members other than type and text (image_url…) are in extra.
export class ContentPart {
  type: string = "";
  text: string = "";
  extra: Extra = new Map<string, RawJSON>();
  hasType: bool = false;
  hasText: bool = false;

  static decode(r: Reader): ContentPart | null {
    const p = new ContentPart();
    if (r.readNull()) return p;
    if (!r.beginObject("content part")) return null;
    while (true) {
      const name = r.nextMember();
      if (name == null) break;
      if (r.kind() == Kind.Null) {
        p.extra.set(name, r.readRaw());
      } else if (name == "type") {
        p.type = r.readString("type");
        p.hasType = true;
      } else if (name == "text") {
        p.text = r.readString("text");
        p.hasText = true;
      } else {
        p.extra.set(name, r.readRaw());
      }
    }
    return r.error == null ? p : null;
  }

  encode(w: Writer): void {
    w.byte(0x7b);
    const written = new Array<string>();
    if (this.hasType || this.type.length > 0) {
      w.member("type", true);
      w.string(this.type);
      written.push("type");
    }
    if (this.hasText || this.text.length > 0) {
      w.member("text", written.length == 0);
      w.string(this.text);
      written.push("text");
    }
    writeExtra(w, this.extra, written, written.length == 0);
    w.byte(0x7d);
  }
}

// ChatResponse is a chat.completion object. Members without a field
// (system_fingerprint…) are in extra. The host restores usage from the backend's
// figures whatever a module returns.
export class ChatResponse {
  id: string = "";
  object: string = "";
  created: i64 = 0;
  model: string = "";
  choices: Choice[] = [];
  usage: Usage | null = null;
  extra: Extra = new Map<string, RawJSON>();
  private has: u8 = 0; // bit i: member i of id, object, created, model, choices was present

  static decode(r: Reader): ChatResponse | null {
    const resp = new ChatResponse();
    if (r.readNull()) return resp;
    if (!r.beginObject("response")) return null;
    while (true) {
      const name = r.nextMember();
      if (name == null) break;
      if (r.kind() == Kind.Null) {
        resp.extra.set(name, r.readRaw());
      } else if (name == "id") {
        resp.id = r.readString("id");
        resp.has |= 1;
      } else if (name == "object") {
        resp.object = r.readString("object");
        resp.has |= 2;
      } else if (name == "created") {
        resp.created = r.readInt("created");
        resp.has |= 4;
      } else if (name == "model") {
        resp.model = r.readString("model");
        resp.has |= 8;
      } else if (name == "choices") {
        const choices = decodeArray<Choice>(r, "choices", Choice.decode);
        if (choices == null) return null;
        resp.choices = choices;
        resp.has |= 16;
      } else if (name == "usage") {
        resp.usage = Usage.decode(r);
        if (resp.usage == null) return null;
      } else {
        resp.extra.set(name, r.readRaw());
      }
    }
    return r.error == null ? resp : null;
  }

  encode(w: Writer): void {
    w.byte(0x7b);
    const written = new Array<string>();
    if ((this.has & 1) != 0 || this.id.length > 0) {
      w.member("id", true);
      w.string(this.id);
      written.push("id");
    }
    if ((this.has & 2) != 0 || this.object.length > 0) {
      w.member("object", written.length == 0);
      w.string(this.object);
      written.push("object");
    }
    if ((this.has & 4) != 0 || this.created != 0) {
      w.member("created", written.length == 0);
      w.int(this.created);
      written.push("created");
    }
    if ((this.has & 8) != 0 || this.model.length > 0) {
      w.member("model", written.length == 0);
      w.string(this.model);
      written.push("model");
    }
    if ((this.has & 16) != 0 || this.choices.length > 0) {
      w.member("choices", written.length == 0);
      encodeArray<Choice>(w, this.choices);
      written.push("choices");
    }
    const usage = this.usage;
    if (usage != null) {
      w.member("usage", written.length == 0);
      usage.encode(w);
      written.push("usage");
    }
    writeExtra(w, this.extra, written, written.length == 0);
    w.byte(0x7d);
  }
}

// Choice is one choice of a response. Members other than index, message and
// finish_reason (logprobs…) are in extra.
export class Choice {
  index: i64 = 0;
  message: Message = new Message();
  finishReason: string = "";
  extra: Extra = new Map<string, RawJSON>();
  private has: u8 = 0;

  static decode(r: Reader): Choice | null {
    const c = new Choice();
    if (r.readNull()) return c;
    if (!r.beginObject("choice")) return null;
    while (true) {
      const name = r.nextMember();
      if (name == null) break;
      if (r.kind() == Kind.Null) {
        c.extra.set(name, r.readRaw());
      } else if (name == "index") {
        c.index = r.readInt("index");
        c.has |= 1;
      } else if (name == "message") {
        const m = Message.decode(r);
        if (m == null) return null;
        c.message = m;
        c.has |= 2;
      } else if (name == "finish_reason") {
        c.finishReason = r.readString("finish_reason");
        c.has |= 4;
      } else {
        c.extra.set(name, r.readRaw());
      }
    }
    return r.error == null ? c : null;
  }

  encode(w: Writer): void {
    w.byte(0x7b);
    const written = new Array<string>();
    if ((this.has & 1) != 0 || this.index != 0) {
      w.member("index", true);
      w.int(this.index);
      written.push("index");
    }
    if ((this.has & 2) != 0 || !this.message.isEmpty()) {
      w.member("message", written.length == 0);
      this.message.encode(w);
      written.push("message");
    }
    if ((this.has & 4) != 0 || this.finishReason.length > 0) {
      w.member("finish_reason", written.length == 0);
      w.string(this.finishReason);
      written.push("finish_reason");
    }
    writeExtra(w, this.extra, written, written.length == 0);
    w.byte(0x7d);
  }
}

// Usage is a response's token counts; other members are in extra.
export class Usage {
  promptTokens: i64 = 0;
  completionTokens: i64 = 0;
  totalTokens: i64 = 0;
  extra: Extra = new Map<string, RawJSON>();
  private has: u8 = 0;

  static decode(r: Reader): Usage | null {
    const u = new Usage();
    if (r.readNull()) return u;
    if (!r.beginObject("usage")) return null;
    while (true) {
      const name = r.nextMember();
      if (name == null) break;
      if (r.kind() == Kind.Null) {
        u.extra.set(name, r.readRaw());
      } else if (name == "prompt_tokens") {
        u.promptTokens = r.readInt("prompt_tokens");
        u.has |= 1;
      } else if (name == "completion_tokens") {
        u.completionTokens = r.readInt("completion_tokens");
        u.has |= 2;
      } else if (name == "total_tokens") {
        u.totalTokens = r.readInt("total_tokens");
        u.has |= 4;
      } else {
        u.extra.set(name, r.readRaw());
      }
    }
    return r.error == null ? u : null;
  }

  encode(w: Writer): void {
    w.byte(0x7b);
    const written = new Array<string>();
    if ((this.has & 1) != 0 || this.promptTokens != 0) {
      w.member("prompt_tokens", true);
      w.int(this.promptTokens);
      written.push("prompt_tokens");
    }
    if ((this.has & 2) != 0 || this.completionTokens != 0) {
      w.member("completion_tokens", written.length == 0);
      w.int(this.completionTokens);
      written.push("completion_tokens");
    }
    if ((this.has & 4) != 0 || this.totalTokens != 0) {
      w.member("total_tokens", written.length == 0);
      w.int(this.totalTokens);
      written.push("total_tokens");
    }
    writeExtra(w, this.extra, written, written.length == 0);
    w.byte(0x7d);
  }
}

// decodeArray decodes an array whose elements decode with f.
function decodeArray<T>(r: Reader, what: string, f: (r: Reader) => T | null): T[] | null {
  if (!r.beginArray(what)) return null;
  const out = new Array<T>();
  while (r.nextElement()) {
    const v = f(r);
    if (v == null) return null;
    out.push(v);
  }
  return r.error == null ? out : null;
}

function encodeArray<T>(w: Writer, items: T[]): void {
  w.byte(0x5b);
  for (let i = 0; i < items.length; i++) {
    if (i > 0) w.byte(0x2c);
    // @ts-ignore: every T here has encode
    items[i].encode(w);
  }
  w.byte(0x5d);
}
