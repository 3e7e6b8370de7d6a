// Command pii-redactor is a pre module that masks e-mail addresses, phone numbers and
// card numbers in chat messages. See plugins/pii-redactor/README.md.
package main

func main() {}
