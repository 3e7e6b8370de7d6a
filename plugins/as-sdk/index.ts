// The Cocoon SDK for AssemblyScript: write modules for the Cocoon host (ABI v1,
// abi/SPEC.md in the Cocoon repository). See README.md.
export { log, Level, reject, fail, Status, allowedStatus, config, ConfigObject } from "./guest";
export { onPre, onPreRaw, onPost, onPostRaw, onStream } from "./hooks";
export { ChatRequest, Message, Content, ContentKind, ContentPart, ChatResponse, Choice, Usage, Extra } from "./types";
export { RawJSON, Reader, Writer, Kind, kindName, equalFoldName } from "./json";
