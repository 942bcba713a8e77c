"""Tables in and out: the contracts and their readers, user inputs, ids, publishing."""
