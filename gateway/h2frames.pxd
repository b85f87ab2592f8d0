# gateway/h2frames.py is compiled by Cython as it is (see setup.py): nothing typed here;
# the gain is C calls and locals instead of bytecode for every frame sent and received.
