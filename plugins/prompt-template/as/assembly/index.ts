// prompt-template: puts the pipeline's system prompt first, decides what happens to
// the client's own system messages, and wraps user messages in a template. The same
// module as ../go and ../c, passing the same vectors (../testdata).
import { ChatRequest, ConfigObject, Content, Message, Status, config, fail, onPre, reject } from "@cocoonhost/as-sdk";
export * from "@cocoonhost/as-sdk/pre";

// Placeholder is replaced by a user message's text in the user template.
const Placeholder = "{{content}}";

// The config, parsed on each request: a fresh instance serves every request.
let system = "";
let onExisting = "keep";
let userTemplate = "";

// parseConfig reads {"system": …, "on_existing": "keep"|"drop"|"reject",
// "user_template": "…{{content}}…"}, all optional, strictly; a module without config
// is an error too.
function parseConfig(): bool {
  const c = ConfigObject.decode(config(), ["system", "on_existing", "user_template"]);
  system = c.string("system", "");
  onExisting = c.string("on_existing", "");
  userTemplate = c.string("user_template", "");
  if (c.error != null) {
    fail(c.error!);
    return false;
  }
  if (onExisting == "") onExisting = "keep";
  if (onExisting != "keep" && onExisting != "drop" && onExisting != "reject") {
    fail("config: on_existing is \"" + onExisting + "\"; want \"keep\", \"drop\" or \"reject\"");
    return false;
  }
  if (userTemplate != "" && !userTemplate.includes(Placeholder)) {
    fail("config: user_template does not contain {{content}}");
    return false;
  }
  return true;
}

function isSystem(m: Message): bool {
  return m.role == "system" || m.role == "developer";
}

// apply returns the user template with text in place of every placeholder; text is
// inserted once, placeholders inside it are not expanded. (Not String#replaceAll: in
// AssemblyScript 0.28 it writes past its buffer when the result is more than twice as
// long as the template; see the SDK's README.)
function apply(text: string): string {
  return userTemplate.split(Placeholder).join(text);
}

onPre((req: ChatRequest): ChatRequest | null => {
  if (!parseConfig()) return null;
  if (onExisting == "reject") {
    for (let i = 0; i < req.messages.length; i++) {
      if (isSystem(req.messages[i])) {
        reject(Status.Policy, "this pipeline does not accept system messages");
        return null;
      }
    }
  } else if (onExisting == "drop") {
    req.messages = req.messages.filter((m: Message): bool => !isSystem(m));
    if (req.messages.length == 0 && system == "") {
      reject(Status.BadRequest, "request has no messages left after removing system messages");
      return null;
    }
  }
  if (userTemplate != "") {
    for (let i = 0; i < req.messages.length; i++) {
      if (req.messages[i].role == "user") req.messages[i].content.mapText(apply);
    }
  }
  if (system != "") req.messages.unshift(new Message("system", Content.fromText(system)));
  return req;
});
