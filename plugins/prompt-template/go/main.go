// Command prompt-template is a pre module that puts the pipeline's system prompt first
// and wraps user messages in a template. See package template for the rules and
// plugins/prompt-template/README.md.
package main

func main() {}
