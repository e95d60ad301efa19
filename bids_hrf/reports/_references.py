"""Full references cited by the methods text (:mod:`bids_hrf.reports.methods`)."""

from __future__ import annotations

#: Full references, keyed by the citation as written in the text.
REFERENCES: dict[str, str] = {
    "Abraham et al., 2014": "Abraham A, Pedregosa F, Eickenberg M, et al. (2014). Machine "
    "learning for neuroimaging with scikit-learn. Frontiers in Neuroinformatics 8:14.",
    "Al-Aidroos et al., 2012": "Al-Aidroos N, Said CP, Turk-Browne NB (2012). Top-down "
    "attention switches coupling between low-level and high-level areas of human visual "
    "cortex. PNAS 109(36):14675-14680.",
    "Akaike, 1974": "Akaike H (1974). A new look at the statistical model identification. "
    "IEEE Transactions on Automatic Control 19(6):716-723.",
    "Beck & Teboulle, 2009": "Beck A, Teboulle M (2009). A fast iterative "
    "shrinkage-thresholding algorithm for linear inverse problems. SIAM Journal on Imaging "
    "Sciences 2(1):183-202.",
    "Behzadi et al., 2007": "Behzadi Y, Restom K, Liau J, Liu TT (2007). A component based "
    "noise correction method (CompCor) for BOLD and perfusion based fMRI. NeuroImage "
    "37(1):90-101.",
    "Benjamini & Hochberg, 1995": "Benjamini Y, Hochberg Y (1995). Controlling the false "
    "discovery rate: a practical and powerful approach to multiple testing. Journal of the "
    "Royal Statistical Society B 57(1):289-300.",
    "Caballero-Gaudes et al., 2013": "Caballero-Gaudes C, Petridou N, Francis ST, Dryden IL, "
    "Gowland PA (2013). Paradigm free mapping with sparse regression automatically detects "
    "single-trial functional magnetic resonance imaging blood oxygenation level dependent "
    "responses. Human Brain Mapping 34(3):501-518.",
    "Chaari et al., 2013": "Chaari L, Vincent T, Forbes F, Dojat M, Ciuciu P (2013). Fast "
    "joint detection-estimation of evoked brain activity in event-related fMRI using a "
    "variational approach. IEEE Transactions on Medical Imaging 32(5):821-837.",
    "Cole et al., 2019": "Cole MW, Ito T, Schultz D, Mill R, Chen R, Cocuzza C (2019). Task "
    "activations produce spurious but systematic inflation of task functional connectivity "
    "estimates. NeuroImage 189:1-18.",
    "Efron et al., 2004": "Efron B, Hastie T, Johnstone I, Tibshirani R (2004). Least angle "
    "regression. Annals of Statistics 32(2):407-499.",
    "Esteban et al., 2019": "Esteban O, Markiewicz CJ, Blair RW, et al. (2019). fMRIPrep: a "
    "robust preprocessing pipeline for functional MRI. Nature Methods 16:111-116.",
    "Ciuciu et al., 2003": "Ciuciu P, Poline JB, Marrelec G, Idier J, Pallier C, Benali H "
    "(2003). Unsupervised robust nonparametric estimation of the hemodynamic response "
    "function for any fMRI experiment. IEEE Transactions on Medical Imaging 22(10):1235-1251.",
    "Freedman & Lane, 1983": "Freedman D, Lane D (1983). A nonstochastic interpretation of "
    "reported significance levels. Journal of Business & Economic Statistics 1(4):292-298.",
    "Friston et al., 1996": "Friston KJ, Williams S, Howard R, Frackowiak RS, Turner R "
    "(1996). Movement-related effects in fMRI time-series. Magnetic Resonance in Medicine "
    "35(3):346-355.",
    "Friston et al., 1998": "Friston KJ, Fletcher P, Josephs O, Holmes A, Rugg MD, Turner R "
    "(1998). Event-related fMRI: characterizing differential responses. NeuroImage "
    "7(1):30-40.",
    "Genovese et al., 2002": "Genovese CR, Lazar NA, Nichols T (2002). Thresholding of "
    "statistical maps in functional neuroimaging using the false discovery rate. NeuroImage "
    "15(4):870-878.",
    "Glover, 1999": "Glover GH (1999). Deconvolution of impulse response in event-related "
    "BOLD fMRI. NeuroImage 9(4):416-429.",
    "Gorgolewski et al., 2011": "Gorgolewski K, Burns CD, Madison C, et al. (2011). Nipype: "
    "a flexible, lightweight and extensible neuroimaging data processing framework in "
    "Python. Frontiers in Neuroinformatics 5:13.",
    "Gorgolewski et al., 2016": "Gorgolewski KJ, Auer T, Calhoun VD, et al. (2016). The "
    "brain imaging data structure, a format for organizing and describing outputs of "
    "neuroimaging experiments. Scientific Data 3:160044.",
    "Gorgolewski et al., 2017": "Gorgolewski KJ, Alfaro-Almagro F, Auer T, et al. (2017). "
    "BIDS apps: improving ease of use, accessibility, and reproducibility of neuroimaging "
    "data analysis methods. PLoS Computational Biology 13(3):e1005209.",
    "Harris et al., 2020": "Harris CR, Millman KJ, van der Walt SJ, et al. (2020). Array "
    "programming with NumPy. Nature 585:357-362.",
    "Holmes & Friston, 1998": "Holmes AP, Friston KJ (1998). Generalisability, random "
    "effects and population inference. NeuroImage 7(4):S754.",
    "Karahanoğlu et al., 2013": "Karahanoğlu FI, Caballero-Gaudes C, Lazeyras F, Van De "
    "Ville D (2013). Total activation: fMRI deconvolution through spatio-temporal "
    "regularization. NeuroImage 73:121-134.",
    "Lindquist et al., 2009": "Lindquist MA, Loh JM, Atlas LY, Wager TD (2009). Modeling the "
    "hemodynamic response function in fMRI: efficiency, bias and mis-modeling. NeuroImage "
    "45(1 Suppl):S187-S198.",
    "Makni et al., 2008": "Makni S, Idier J, Vincent T, et al. (2008). A fully Bayesian "
    "approach to the parcel-based detection-estimation of brain activity in fMRI. "
    "NeuroImage 41(3):941-969.",
    "Meinshausen & Bühlmann, 2010": "Meinshausen N, Bühlmann P (2010). Stability selection. "
    "Journal of the Royal Statistical Society B 72(4):417-473.",
    "Nichols & Holmes, 2002": "Nichols TE, Holmes AP (2002). Nonparametric permutation tests "
    "for functional neuroimaging: a primer with examples. Human Brain Mapping 15(1):1-25.",
    "Prince et al., 2022": "Prince JS, Charest I, Kurzawski JW, Pyles JA, Tarr MJ, Kay KN "
    "(2022). Improving the accuracy of single-trial fMRI response estimates using GLMsingle. "
    "eLife 11:e77599.",
    "Pedregosa et al., 2011": "Pedregosa F, Varoquaux G, Gramfort A, et al. (2011). "
    "Scikit-learn: machine learning in Python. Journal of Machine Learning Research "
    "12:2825-2830.",
    "Pedregosa et al., 2015": "Pedregosa F, Eickenberg M, Ciuciu P, Thirion B, Gramfort A "
    "(2015). Data-driven HRF estimation for encoding and decoding models. NeuroImage "
    "104:209-220.",
    "Power et al., 2014": "Power JD, Mitra A, Laumann TO, et al. (2014). Methods to detect, "
    "characterize, and remove motion artifact in resting state fMRI. NeuroImage 84:320-341.",
    "Richiardi et al., 2015": "Richiardi J, Altmann A, Milazzo AC, et al. (2015). "
    "Correlated gene expression supports synchronous activity in brain networks. Science "
    "348(6240):1241-1244.",
    "Satterthwaite et al., 2013": "Satterthwaite TD, Elliott MA, Gerraty RT, et al. (2013). "
    "An improved framework for confound regression and filtering for control of motion "
    "artifact in the preprocessing of resting-state functional connectivity data. "
    "NeuroImage 64:240-256.",
    "Schwarz, 1978": "Schwarz G (1978). Estimating the dimension of a model. Annals of "
    "Statistics 6(2):461-464.",
    "Thirion et al., 2014": "Thirion B, Varoquaux G, Dohmatob E, Poline JB (2014). Which "
    "fMRI clustering gives good brain parcellations? Frontiers in Neuroscience 8:167.",
    "Uruñuela et al., 2020": "Uruñuela E, Jones S, Crawford A, et al. (2020). "
    "Stability-based sparse paradigm free mapping algorithm for deconvolution of functional "
    "MRI data. 42nd Annual International Conference of the IEEE EMBC, 1092-1095.",
    "Uruñuela et al., 2021": "Uruñuela E, Moia S, Caballero-Gaudes C (2021). A low rank and "
    "sparse paradigm free mapping algorithm for deconvolution of fMRI data. IEEE 18th "
    "International Symposium on Biomedical Imaging (ISBI), 1726-1729.",
    "Uruñuela et al., 2024": "Uruñuela E, Gonzalez-Castillo J, Zheng C, Bandettini P, "
    "Caballero-Gaudes C (2024). Whole-brain multivariate hemodynamic deconvolution for "
    "functional MRI with stability selection. Medical Image Analysis 91:103010.",
    "Varoquaux et al., 2010": "Varoquaux G, Baronnet F, Kleinschmidt A, Fillard P, Thirion B "
    "(2010). Detection of brain functional-connectivity difference in post-stroke patients "
    "using group-level covariance modeling. MICCAI 2010, LNCS 6361:200-208.",
    "Vincent et al., 2010": "Vincent T, Risser L, Ciuciu P (2010). Spatially adaptive mixture "
    "modeling for analysis of fMRI time series. IEEE Transactions on Medical Imaging "
    "29(4):1059-1074.",
    "Vincent et al., 2014": "Vincent T, Badillo S, Risser L, et al. (2014). Flexible "
    "multivariate hemodynamics fMRI data analyses and simulations with PyHRF. Frontiers in "
    "Neuroscience 8:67.",
    "Virtanen et al., 2020": "Virtanen P, Gommers R, Oliphant TE, et al. (2020). SciPy 1.0: "
    "fundamental algorithms for scientific computing in Python. Nature Methods 17:261-272.",
    "Wang et al., 2024": "Wang HT, Meisler SL, Sharmarke H, et al. (2024). Continuous "
    "evaluation of denoising strategies in resting-state fMRI connectivity using fMRIPrep "
    "and Nilearn. PLoS Computational Biology 20(3):e1011942.",
    "Worsley et al., 2002": "Worsley KJ, Liao CH, Aston J, et al. (2002). A general "
    "statistical analysis for fMRI data. NeuroImage 15(1):1-15.",
    "Yarkoni et al., 2019": "Yarkoni T, Markiewicz CJ, de la Vega A, et al. (2019). PyBIDS: "
    "Python tools for BIDS datasets. Journal of Open Source Software 4(40):1294.",
}
