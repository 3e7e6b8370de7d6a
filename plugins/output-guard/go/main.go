// Command output-guard is a post module that masks listed words in the model's answer,
// streamed or not. See package guard for the rules and plugins/output-guard/README.md.
package main

func main() {}
