"""The fairest peer of the dashboard's first map in the browser: a Streamlit page with a title and a line.

``bench/browser.py`` opens it in fresh browser contexts on the same machine, in the same run as the
dashboard, to tell how much of "first map from navigation" is Streamlit's own start in the page
(loading and running its front end, opening the websocket, the first script run) before essmap
computes or sends anything.
"""

import streamlit as st

st.title("Page témoin")
st.write("Une page Streamlit sans données ni carte.")
