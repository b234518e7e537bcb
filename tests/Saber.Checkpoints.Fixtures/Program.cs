// saber-fixture: the command-line front of the fixture writer (written with issue 22).
return 0;
