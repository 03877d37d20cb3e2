/* spool: being written */
