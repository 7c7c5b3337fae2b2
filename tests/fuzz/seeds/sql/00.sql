CREATE TABLE "D" (id int);
INSERT INTO "D" VALUES ('abc);
